"""People who sign in to the Export Center page (the gateway's `POST /api/v1/auth/login`).

Services never read this table: they trust the JWT the gateway mints after a login.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, Integer, LargeBinary, String, UniqueConstraint
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
