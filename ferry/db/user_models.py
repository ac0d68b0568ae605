"""People who sign in to the Export Center page (the gateway's `POST /api/v1/auth/login`).

Only the auth service reads and writes these tables; the other services read the ids of
revoked tokens (ferry.auth.revocation).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ferry.db.models import Base, Id, utcnow


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("username"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(150))
    # scrypt output, with the salt and cost parameters it was made with (so they can be
    # raised later without breaking existing passwords).
    password_hash: Mapped[bytes] = mapped_column(LargeBinary(64))
    password_salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    scrypt_n: Mapped[int] = mapped_column(Integer)
    scrypt_r: Mapped[int] = mapped_column(Integer)
    scrypt_p: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # A bare mail address, "" when none is set: where "Email me when done" sends.
    email: Mapped[str] = mapped_column(String(254), default="", server_default="")
    # en | el: the language the user last signed in to the page in ("" before that); their
    # mails are written in it when the request names none.
    language: Mapped[str] = mapped_column(String(8), default="", server_default="")
    # The school the user belongs to (migration 0016): their sign-in's token acts in it,
    # and only that school's admins see or change them. Usernames stay unique in the
    # installation, so a sign-in needs no school.
    school_id: Mapped[int] = mapped_column(
        Id, ForeignKey("schools.id", ondelete="RESTRICT"), index=True, server_default="1"
    )


class IssuedToken(Base):
    """A token the auth service issued (Login, CreateToken): who, role, expiry, last use,
    and whether it was revoked. Services read the revoked ids of unexpired tokens."""

    __tablename__ = "auth_tokens"
    __table_args__ = (
        Index("ix_auth_tokens_revoked", "revoked_at", "expires_at"),
        Index("ix_auth_tokens_subject", "subject"),
    )

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    # login | api: a Login's session token, or one made with CreateToken.
    kind: Mapped[str] = mapped_column(String(16))
    issued_by: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The school the token acts in (its sch claim; migration 0016): listed and revoked
    # by that school's admins only.
    school_id: Mapped[int] = mapped_column(
        Id, ForeignKey("schools.id", ondelete="RESTRICT"), index=True, server_default="1"
    )
