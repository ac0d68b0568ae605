"""Dataset specs (entities, natural keys, references, scope); `school` is built in."""

from __future__ import annotations

from ferry import plugins
from ferry.datasets.spec import Dataset
from ferry.errors import InvalidArgument


def load_dataset(name: str, field: str = "dataset", *, from_config: bool = False) -> Dataset:
    """The dataset spec registered as `name` in `ferry.datasets`; InvalidArgument naming
    `field` (the request or bundle field that named it) when there is none.

    Only a name from ferry.yaml (`from_config`) may be a `module:attr` path; a name from a
    request or a bundle is matched against the registered names and imports nothing.
    """
    if from_config:
        try:
            ds = plugins.resolve("ferry.datasets", name, allow_path=True)
        except plugins.PluginError as e:
            raise InvalidArgument(str(e), field=field) from None
    else:
        ds = plugins.from_request("ferry.datasets", name, field)
    if not isinstance(ds, Dataset):
        raise InvalidArgument(f"plugin {name!r} is not a dataset spec", field=field)
    return ds
