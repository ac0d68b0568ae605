"""AuthService: the gRPC face of ferry.auth and ferry.users. Translation only.

Every call but Login acts for one school (the auth filter: the token's, or the one a
platform admin names); users and tokens are read and changed in that school only.
"""

from __future__ import annotations

import datetime as dt

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ferry import users
from ferry.app import App
from ferry.auth import ROLES, Principal, issuing
from ferry.auth import store as token_store
from ferry.auth.tokens import IssuedToken
from ferry.db import schools
from ferry.errors import InvalidArgument, PermissionDenied, Unauthenticated
from ferry.rpc.errors import handles_errors
from ferry.rpc.filters import current_call
from ferry.v1 import auth_pb2 as pb
from ferry.v1 import auth_pb2_grpc, options_pb2

MAX_PAGE = 1000


def _role(value: int) -> options_pb2.Role.ValueType:
    return options_pb2.Role.ValueType(value)


def _ts(t: dt.datetime | None) -> Timestamp | None:
    if t is None:
        return None
    out = Timestamp()
    out.FromDatetime(t)
    return out


def _token_info(t: token_store.TokenInfo) -> pb.TokenInfo:
    return pb.TokenInfo(
        jti=t.jti, subject=t.subject, role=_role(ROLES.get(t.role, 0)), kind=t.kind,
        issued_by=t.issued_by, issued_at=_ts(t.issued_at), expires_at=_ts(t.expires_at),
        last_used_at=_ts(t.last_used_at), revoked_at=_ts(t.revoked_at), school=t.school,
    )  # fmt: skip


def _user(a: users.Account) -> pb.User:
    return pb.User(username=a.username, role=_role(ROLES.get(a.role, 0)), disabled=a.disabled,
                   created_at=_ts(a.created_at), email=a.email, school=a.school)  # fmt: skip


def _role_name(role: int, field: str = "role") -> str:
    for name, value in ROLES.items():
        if value == role:
            return name
    raise InvalidArgument(f"{field} is required; roles: {', '.join(ROLES)}", field=field)


def _caller() -> Principal:
    call = current_call()
    principal = call.attrs.get("principal") if call is not None else None
    if not isinstance(principal, Principal):
        raise Unauthenticated("this call carries no verified token")
    return principal


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    full_name = pb.DESCRIPTOR.services_by_name["AuthService"].full_name

    def __init__(self, app: App) -> None:
        self.app = app
        self.login_limiter = issuing.login_limiter(app)

    def register(self, server: grpc.Server) -> None:
        auth_pb2_grpc.add_AuthServiceServicer_to_server(self, server)

    def start(self) -> None:
        """Load the private key now, so a missing or bad key stops start-up."""
        self.app.issuer()

    def stop(self) -> None:
        return None

    def _issued(self, issued: IssuedToken) -> pb.TokenInfo:
        info = token_store.get(self.app.engine, issued.jti)
        assert info is not None
        return _token_info(info)

    @handles_errors
    def Login(self, request: pb.LoginRequest, context: grpc.ServicerContext) -> pb.LoginResponse:
        issued = issuing.login(self.app, request.username, request.password, self.login_limiter)
        users.set_language(self.app.engine, issued.subject, request.language)
        school = schools.find(self.app.engine, issued.school)
        return pb.LoginResponse(token=issued.token, subject=issued.subject, role=_role(issued.role),
                                expires_at=_ts(issued.expires_at), school=issued.school,
                                email=users.email_of(self.app.engine, issued.subject,
                                                     school.id))  # fmt: skip

    @handles_errors
    def CreateToken(
        self, request: pb.CreateTokenRequest, context: grpc.ServicerContext
    ) -> pb.CreateTokenResponse:
        caller = _caller()
        issued = issuing.create_token(
            self.app,
            request.role,
            request.subject,
            request.ttl_seconds,
            caller.subject,
            caller.school,
            caller_role=caller.role,
        )
        return pb.CreateTokenResponse(token=issued.token, info=self._issued(issued))

    @handles_errors
    def RevokeToken(
        self, request: pb.RevokeTokenRequest, context: grpc.ServicerContext
    ) -> pb.RevokeTokenResponse:
        return pb.RevokeTokenResponse(info=_token_info(issuing.revoke(self.app, request.jti)))

    @handles_errors
    def ListTokens(
        self, request: pb.ListTokensRequest, context: grpc.ServicerContext
    ) -> pb.ListTokensResponse:
        if not 0 <= request.page_size <= MAX_PAGE:
            raise InvalidArgument(f"page_size must be 0 to {MAX_PAGE}", field="page_size")
        found = token_store.list_tokens(
            self.app.engine,
            request.subject.strip(),
            request.include_expired,
            request.page_size or 100,
        )
        return pb.ListTokensResponse(tokens=[_token_info(t) for t in found])

    @handles_errors
    def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.ServicerContext) -> pb.WhoAmIResponse:
        p = _caller()
        exp = dt.datetime.fromtimestamp(p.expires_at, dt.UTC) if p.expires_at else None
        return pb.WhoAmIResponse(
            subject=p.subject, role=_role(p.role), jti=p.jti, expires_at=_ts(exp), school=p.school
        )

    @handles_errors
    def ListSchools(
        self, request: pb.ListSchoolsRequest, context: grpc.ServicerContext
    ) -> pb.ListSchoolsResponse:
        p = _caller()
        found = schools.all_schools(self.app.engine)
        if not p.platform:  # a school's token knows of its own school only
            found = [s for s in found if s.code == p.school]
        return pb.ListSchoolsResponse(
            schools=[pb.School(code=s.code, name=s.name, language=s.language) for s in found]
        )

    @handles_errors
    def CreateLinkToken(
        self, request: pb.CreateLinkTokenRequest, context: grpc.ServicerContext
    ) -> pb.CreateLinkTokenResponse:
        issued = issuing.link_token(
            self.app, request.path, request.ttl_seconds, _caller(), request.subject
        )
        return pb.CreateLinkTokenResponse(
            token=issued.token, expires_at=_ts(issued.expires_at), info=self._issued(issued)
        )

    @handles_errors
    def CreateUser(
        self, request: pb.CreateUserRequest, context: grpc.ServicerContext
    ) -> pb.CreateUserResponse:
        role = _role_name(request.role)
        call = current_call()
        caller = call.attrs.get("principal") if call is not None else None
        if isinstance(caller, Principal) and ROLES[role] > caller.role:
            raise PermissionDenied(f"a user of role {role} is above the caller's own")
        password = request.password or users.generate_password()
        account = users.create_user(
            self.app.engine, request.username, password, role, request.email
        )
        return pb.CreateUserResponse(
            user=_user(account), generated_password="" if request.password else password
        )

    @handles_errors
    def SetPassword(
        self, request: pb.SetPasswordRequest, context: grpc.ServicerContext
    ) -> pb.SetPasswordResponse:
        if not request.username.strip():
            raise InvalidArgument("username is required", field="username")
        password = request.password or users.generate_password()
        account = users.set_password(self.app.engine, request.username, password)
        return pb.SetPasswordResponse(
            user=_user(account), generated_password="" if request.password else password
        )

    @handles_errors
    def SetEmail(
        self, request: pb.SetEmailRequest, context: grpc.ServicerContext
    ) -> pb.SetEmailResponse:
        if not request.username.strip():
            raise InvalidArgument("username is required", field="username")
        return pb.SetEmailResponse(
            user=_user(users.set_email(self.app.engine, request.username, request.email))
        )

    @handles_errors
    def DisableUser(
        self, request: pb.DisableUserRequest, context: grpc.ServicerContext
    ) -> pb.DisableUserResponse:
        account, revoked = issuing.disable_user(self.app, request.username)
        return pb.DisableUserResponse(user=_user(account), revoked_tokens=revoked)

    @handles_errors
    def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.ServicerContext
    ) -> pb.ListUsersResponse:
        return pb.ListUsersResponse(users=[_user(a) for a in users.list_users(self.app.engine)])
