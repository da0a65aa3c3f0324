"""Documentation and examples of login and organisation administration (see docs/api-examples.md)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, not_found

NOT_FOUND = {**not_found("user", "not_found", "User"), **not_found("key", "not_found", "API key")}

OPERATIONS = {
    "POST /auth/token": Op(
        "Exchanges a staff user's email and password for a bearer token (OAuth2 password flow: send "
        "`username` and `password` form-encoded). Send the token as `Authorization: Bearer <token>` until "
        "`expires_in` seconds have passed. Failed logins are limited per address and per account.",
        form={"username": "admin@demo-clinic.example", "password": "demo-password-123"},
        given=["demo_admin"],
        errors=[Err(401, "unauthenticated", "Incorrect email or password",
                    "Unknown email, wrong password or a deactivated user"),
                Err(429, "rate_limited", "Too many requests; retry later",
                    "Too many failed logins for this address or account (`Retry-After` says when)")]),
    "GET /auth/me": Op("Who the credential is: organisation, kind (`user` or `api_key`), role and scopes. "
                       "Use it to check a key or token before calling anything else."),
    "GET /admin/organisation": Op("The caller's organisation: name, slug and time zone."),
    "GET /admin/organisation/settings": Op(
        "The organisation's own settings (null: the service default applies) next to the effective values."),
    "PATCH /admin/organisation/settings": Op(
        "Sets the organisation's own phone region (for numbers written without a country code) and "
        "appointment reminder offsets; a field sent as null goes back to the service default. The answer "
        "shows the effective values.",
        body={"default_phone_region": "ES", "reminder_offsets_minutes": "1d,2h"},
        errors=[Err(422, "validation_failed", "default_phone_region: String should match pattern '^[A-Z]{2}$'",
                    "A region that is not two capital letters, or offsets that do not parse")]),
    "POST /admin/organisations": Op(
        body={"organisation": {"name": "Clínica Dental Sol", "slug": "clinica-sol", "timezone": "Europe/Madrid"},
              "admin": {"email": "lucia.moreno@clinica-sol.example", "password": "a-long-passphrase-42",
                        "full_name": "Lucía Moreno", "role": "admin"}},
        errors=[Err(409, "slug_taken", "An organisation with slug 'clinica-sol' exists", "The slug is taken"),
                Err(409, "email_taken", "A user with this email exists", "The admin's email has an account")]),
    "GET /admin/users": Op("Every staff user of the organisation (no passwords).", given=["user"]),
    "POST /admin/users": Op(
        "Creates a staff user who logs in with `POST /auth/token`; the role decides the scopes.",
        body={"email": "jorge.vidal@demo-clinic.example", "password": "a-long-passphrase-42",
              "full_name": "Jorge Vidal", "role": "coordinator"},
        errors=[Err(409, "email_taken", "A user with this email exists", "The email already has an account")]),
    "PATCH /admin/users/{user_id}": Op(
        "Changes a user's name, role, password or deactivates them (`is_active: false`: their tokens stop "
        "working at once).",
        body={"role": "support_agent", "full_name": "Casey Coordinator"}),
    "GET /admin/api-keys": Op("The organisation's API keys (never the secret; its prefix identifies it).",
                              given=["key"]),
    "POST /admin/api-keys": Op(
        "Creates an API key for an integration; `key` is in this response only (store it now). Send it "
        "as `Authorization: Bearer prm_...` or `X-API-Key`.",
        body={"name": "Website booking widget", "role": "integration", "expires_at": "2027-03-23T00:00:00Z"}),
    "POST /admin/api-keys/{key_id}/revoke": Op(
        "Revokes an API key: every later call with it is a 401. Revoking twice is harmless."),
}
