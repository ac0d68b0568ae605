"""What Send and SendBulk do before anything is queued: check the channels and recipients,
render the texts, and write the outbox rows; and the channels' health.

Bad input changes nothing: every recipient of every channel is checked and the template
is rendered before the first row is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ferry import plugins
from ferry.app import App
from ferry.config import NotifySettings
from ferry.errors import InvalidArgument, ResourceExhausted
from ferry.notify import store, templates
from ferry.notify.channels.base import Channel, Health

MAX_EVENT_ID = 200
# Event ids of Ferry's own announcements. Only Ferry's services (token subject
# `service:<name>`) may Send them; everyone else is refused, so nobody can take the id of
# a job's announcement before the job does (and have their own text sent instead).
RESERVED_EVENT_PREFIXES = ("export:", "import:", "backup:", "schedule:")
SERVICE_SUBJECT = "service:"
# Any other caller's event id is kept under a scope of its own: `~<16 hex of the
# caller's sha256>/<event id>`, so two callers never collide however they name events
# (store.public_event_id takes the scope off again for mails and webhooks).


def event_scope(caller: str) -> str:
    """The prefix of `caller`'s event ids in the outbox ("" for Ferry's own services and
    for in-process calls without a verified caller)."""
    import hashlib

    if not caller or caller == "-" or caller.startswith(SERVICE_SUBJECT):
        return ""
    return f"~{hashlib.sha256(caller.encode()).hexdigest()[:16]}/"


def scoped_event_id(event_id: str, caller: str) -> str:
    """`event_id` as stored for `caller` ("" when none was given: a fresh one is made);
    INVALID_ARGUMENT naming event_id for a reserved prefix or an id that is too long."""
    event_id = event_id.strip()
    scope = event_scope(caller)
    limit = MAX_EVENT_ID - len(scope)
    if len(event_id) > limit:
        raise InvalidArgument(f"event_id is longer than {limit} characters", field="event_id")
    if not event_id:
        return ""
    if scope and event_id.startswith(RESERVED_EVENT_PREFIXES):
        prefix = event_id.split(":", 1)[0]
        raise InvalidArgument(
            f"event_id: the prefix '{prefix}:' is reserved for Ferry's own announcements; "
            "choose another event id",
            field="event_id",
        )
    return scope + event_id


def sibling_event_id(event_id: str, language: str) -> str:
    """The event id of the notification in `language` of a Send whose recipients read
    different languages (`event_id` is the first recipient's): `<event id>:<language>`,
    with the event id's tail replaced by its digest when that would be too long."""
    import hashlib

    out = f"{event_id}:{language}"
    if len(out) <= MAX_EVENT_ID:
        return out
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:16]
    return f"{event_id[: MAX_EVENT_ID - 20 - len(language)]}~{digest}:{language}"


@dataclass(frozen=True)
class SendInput:
    channels: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    template: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    subject: str = ""
    body: str = ""
    language: str = ""
    event_id: str = ""


@dataclass(frozen=True)
class ChannelInfo:
    name: str
    kind: str
    health: Health
    pending: int


def announcement(
    settings: NotifySettings,
    recipients: list[str],
    template: str,
    variables: dict[str, Any],
    event_id: str,
    requested_by: str,
    language: str = "",
) -> store.NewNotification:
    """A notification another service writes into the outbox itself, in its own
    transaction (ferry.notify.import_announcement): the default channels, each
    recipient already checked as a mail address, rendered in `language` (the recipients'
    own, ferry.users.language_of), else the default language.

    No channel is built here (that is the notify service's: an smtp channel needs its
    password, which only the notify pods mount); a recipient one of the channels cannot
    take fails that one delivery when a worker tries it, and says why."""
    language = language or settings.default_language
    text = templates.render(template, variables, language, "", "")
    pairs = [(c, r) for c in dict.fromkeys(settings.default_channels) for r in recipients]
    return store.NewNotification(
        event_id=event_id,
        deliveries=pairs,
        subject=text.subject,
        text=text.text,
        html=text.html,
        template=template,
        language=language,
        variables=dict(variables),
        requested_by=requested_by,
    )


class Notify:
    """The configured channels of this process and the Send logic over the outbox."""

    def __init__(self, app: App, on_queued: Callable[[], None] | None = None) -> None:
        self.app = app
        self.settings = app.settings.notify
        self.on_queued = on_queued
        self._channels: dict[str, Channel] | None = None
        self._writer: store.GroupCommit | None = None

    @property
    def channels(self) -> dict[str, Channel]:
        """Channel instances by name, built on first use from notify.channels."""
        if self._channels is None:
            out: dict[str, Channel] = {}
            for name in self.settings.channels:
                try:
                    out[name] = self.app.plugin("ferry.channels", name)
                except plugins.PluginError as e:
                    raise plugins.PluginError(f"notify.channels: {e}") from None
                except ValueError as e:  # a channel's own check of its settings
                    raise plugins.PluginError(str(e)) from None
            self._channels = out
        return self._channels

    def _check(self, req: SendInput, recipients_field: str = "recipients") -> list[tuple[str, str]]:
        """The (channel, recipient) pairs of `req`, or InvalidArgument naming the field."""
        names = list(dict.fromkeys(req.channels)) or list(self.settings.default_channels)
        configured = self.channels
        for i, name in enumerate(names):
            if name not in configured:
                raise InvalidArgument(
                    f"unknown channel {name!r} (channels[{i}]); configured: "
                    f"{', '.join(configured) or 'none'}",
                    field="channels",
                )
        if len(req.recipients) > self.settings.max_recipients:
            raise ResourceExhausted(
                f"{len(req.recipients)} recipients; at most {self.settings.max_recipients} "
                "per notification (use SendBulk for more)"
            )
        pairs: list[tuple[str, str]] = []
        for name in names:
            channel = configured[name]
            given = [r.strip() for r in req.recipients]
            if not given:
                given = list(getattr(channel, "default_recipients", list)())
            if not given:
                raise InvalidArgument(
                    f"recipients is required for channel {name!r}", field=recipients_field
                )
            for i, r in enumerate(given):
                try:
                    pairs.append((name, channel.validate_recipient(r)))
                except ValueError as e:
                    raise InvalidArgument(
                        f"{recipients_field}[{i}]: {e}", field=recipients_field
                    ) from None
        return pairs

    def _new(
        self,
        req: SendInput,
        pairs: list[tuple[str, str]],
        event_id: str,
        who: str,
        language: str = "",
    ) -> store.NewNotification:
        language = language or req.language or self._recipients_language(pairs)
        text = templates.render(req.template, req.variables, language, req.subject, req.body)
        return store.NewNotification(
            event_id=event_id,
            deliveries=pairs,
            subject=text.subject,
            text=text.text,
            html=text.html,
            template=req.template,
            language=language,
            variables=dict(req.variables),
            requested_by=who,
        )

    def _by_language(
        self, req: SendInput, pairs: list[tuple[str, str]]
    ) -> dict[str, list[tuple[str, str]]]:
        """`pairs` by the language their mail is written in, in the order of their first
        recipient: all in the request's language when it names one, or when it names no
        template (a subject and body are the caller's own words, written once); else each
        recipient in their own (ferry.users.language_of), notify.default_language for one
        who is no user of the page."""
        if req.language or not req.template:
            return {req.language or self._recipients_language(pairs): pairs}
        langs = self._languages([r for _, r in pairs])
        out: dict[str, list[tuple[str, str]]] = {}
        for channel, r in pairs:
            lang = langs.get(r, self.settings.default_language)
            out.setdefault(lang, []).append((channel, r))
        return out

    def _recipients_language(self, pairs: list[tuple[str, str]]) -> str:
        """The language the recipients use the page in, when they are users who share one
        (ferry.users.language_of), else notify.default_language."""
        found = set(self._languages([r for _, r in pairs]).values())
        return found.pop() if len(found) == 1 else self.settings.default_language

    def _languages(self, recipients: list[str]) -> dict[str, str]:
        """{address: language} of the recipients who are users of the page."""
        from ferry.users import languages_by_address

        addresses = [r for r in recipients if "@" in r]
        if not addresses:
            return {}
        with self.app.engine.connect() as conn:
            return languages_by_address(conn, addresses)

    def _event_id(self, event_id: str, caller: str) -> str:
        return scoped_event_id(event_id, caller) or store.new_event_id()

    def send(self, req: SendInput, requested_by: str = "") -> tuple[store.View, bool]:
        """Queue one notification (or return the earlier one with the same event id from
        the same caller: event ids are scoped per caller, see `scoped_event_id`)."""
        event_id = self._event_id(req.event_id, requested_by)
        groups = self._by_language(req, self._check(req))
        if len(groups) > 1:
            # Recipients who read different languages: one notification per language,
            # the first recipient's under the event id, the others' under
            # `<event id>:<language>`, written only when the first is new (store.create_group),
            # so a repeated Send, even after someone changed their language, sends nothing.
            news = [
                self._new(req, pairs, event_id if i == 0 else sibling_event_id(event_id, lang),
                          requested_by, lang)
                for i, (lang, pairs) in enumerate(groups.items())
            ]  # fmt: skip
            view, created = store.create_group(self.app.engine, news)[0]
            if created and self.on_queued is not None:
                self.on_queued()
            return view, created
        ((lang, pairs),) = groups.items()
        new = self._new(req, pairs, event_id, requested_by, lang)
        if self._writer is None:  # concurrent Sends share transactions
            self._writer = store.GroupCommit(self.app.engine)
        view, created = self._writer.create(new)
        if created and self.on_queued is not None:
            self.on_queued()
        return view, created

    def send_bulk(
        self, req: SendInput, requested_by: str = ""
    ) -> list[tuple[str, store.View, bool]]:
        """One notification per recipient; all are checked before any is queued."""
        cap = self.settings.max_bulk_recipients
        if len(req.recipients) > cap:
            raise ResourceExhausted(
                f"{len(req.recipients)} recipients; SendBulk takes at most {cap} "
                "(notify.max_bulk_recipients)"
            )
        if not req.recipients:
            raise InvalidArgument("recipients is required", field="recipients")
        base = self._event_id(req.event_id, requested_by)
        news: list[tuple[str, store.NewNotification]] = []
        seen: set[str] = set()
        # Each recipient's mail in their own language when the request names none.
        langs = {} if req.language else self._languages(req.recipients)
        for i, r in enumerate(req.recipients):
            lang = req.language or langs.get(r.strip(), self.settings.default_language)
            one = SendInput(**{**req.__dict__, "recipients": [r], "language": lang})
            try:
                pairs = self._check(one)
            except InvalidArgument as e:
                raise InvalidArgument(
                    e.message.replace("recipients[0]", f"recipients[{i}]"), field="recipients"
                ) from None
            if r.strip() in seen:
                continue
            seen.add(r.strip())
            news.append((r.strip(), self._new(one, pairs, f"{base}:{r.strip()}", requested_by)))
        # One transaction for all of them.
        made = store.create_many(self.app.engine, [new for _, new in news])
        out = [(r, view, created) for (r, _), (view, created) in zip(news, made, strict=True)]
        if any(c for _, _, c in out) and self.on_queued is not None:
            self.on_queued()
        return out

    def channel_infos(self) -> list[ChannelInfo]:
        depth = store.depth(self.app.engine)
        off = store.disabled(self.app.engine)
        out = []
        for name, ch in self.channels.items():
            try:
                health = ch.health()
            except Exception as e:  # a health check must not fail the listing
                health = Health(False, f"health check failed: {type(e).__name__}")
            gone = sorted(k for k in off if k == name or k.startswith(f"{name}/"))
            if gone and health.healthy:
                health = Health(
                    False, "switched off: " + "; ".join(f"{k} ({off[k]})" for k in gone)
                )
            kind = str(getattr(ch, "name", name))
            out.append(ChannelInfo(name, kind, health, depth.get(name, 0)))
        return out
