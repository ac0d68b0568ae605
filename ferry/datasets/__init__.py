"""Dataset specs (entities, natural keys, references, scope); `school` is built in."""

from __future__ import annotations

from ferry import plugins
from ferry.datasets.spec import Dataset
from ferry.errors import InvalidArgument


def load_dataset(name: str, field: str = "dataset") -> Dataset:
    """The dataset spec registered as `name` in `ferry.datasets`; InvalidArgument naming
    `field` (the request or bundle field that named it) when there is none."""
    try:
        ds = plugins.load("ferry.datasets", name)
    except plugins.PluginError as e:
        raise InvalidArgument(str(e), field=field) from None
    if not isinstance(ds, Dataset):
        raise InvalidArgument(f"plugin {name!r} is not a dataset spec", field=field)
    return ds
