"""A SATOSA response micro service for an eIDAS bridge: the SAML
authentication context (the eIDAS level of assurance) and the moment of
the login become OpenID Connect claims, so that the ID token carries `acr`
and `auth_time`, which Estafette requires (SPEC.md 8.2)."""

from datetime import datetime, timezone

from satosa.frontends import openid_connect
from satosa.micro_services.base import ResponseMicroService

# The OpenID Connect frontend passes claims it does not know on as lists;
# these are single-valued (`acr` and `auth_time` must be, for the ID token
# to be made at all): their first value, as for the standard claims.
for _claim in ("acr", "auth_time", "person_identifier"):
    openid_connect.combine_values_by_claim[_claim] = openid_connect.combine_select_first_value


class LoginContext(ResponseMicroService):
    """Copies auth_info.auth_class_ref to the attribute `acr` and
    auth_info.timestamp (the SAML AuthnInstant) to `auth_time`."""

    def process(self, context, data):
        info = data.auth_info
        if info.auth_class_ref:
            data.attributes["acr"] = [info.auth_class_ref]
        if info.timestamp:
            instant = datetime.fromisoformat(info.timestamp.replace("Z", "+00:00"))
            if instant.tzinfo is None:
                instant = instant.replace(tzinfo=timezone.utc)
            data.attributes["auth_time"] = [int(instant.timestamp())]
        return super().process(context, data)
