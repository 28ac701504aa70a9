"""An eIDAS login for Estafette's tests: a SAML 2.0 identity provider
(pysaml2) that sends the eIDAS natural-person attributes, behind SATOSA
with its SAML backend and its OpenID Connect frontend: the bridge many
European services use to reach eIDAS nodes. Both serve HTTPS in this one
process.

    python bridge.py CONFIG.json

CONFIG: {"dir": work dir, "host": "localhost", "tls_cert", "tls_key",
         "client_id", "client_secret", "redirect_uri",
         "accounts": {login: {"password", "loa", "PersonIdentifier",
                              "FamilyName", "FirstName", "DateOfBirth"}}}

When both listen it prints one JSON line: {"issuer": the OpenID issuer
(SATOSA), "jwks": the path of its public JWKS}.
"""

import base64
import datetime
import html
import json
import os
import socket
import ssl
import sys
import threading
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig, SPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server

HERE = os.path.dirname(os.path.abspath(__file__))
MAPS = os.path.join(HERE, "attributemaps")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_and_cert(directory, name):
    """An RSA key and a self-signed certificate (SAML metadata keys)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path = os.path.join(directory, name + ".key")
    cert_path = os.path.join(directory, name + ".crt")
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key, key_path, cert_path


def b64url_int(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sp_config(base, key, cert, idp_metadata=None):
    conf = {
        "entityid": base + "/Saml2/proxy_saml2_backend.xml",
        "key_file": key, "cert_file": cert,
        "attribute_map_dir": MAPS,
        "allow_unknown_attributes": True,
        "service": {"sp": {
            "allow_unsolicited": False,
            "want_assertions_signed": True,
            "want_response_signed": False,
            "authn_requests_signed": False,
            "name_id_format_allow_create": True,
            "endpoints": {"assertion_consumer_service": [
                [base + "/Saml2/acs/post", BINDING_HTTP_POST]]},
        }},
    }
    if idp_metadata:
        conf["metadata"] = {"local": [idp_metadata]}
    return conf


def idp_config(base, key, cert, sp_metadata=None):
    conf = {
        "entityid": base + "/idp.xml",
        "key_file": key, "cert_file": cert,
        "attribute_map_dir": MAPS,
        "service": {"idp": {
            "endpoints": {"single_sign_on_service": [[base + "/sso/redirect", BINDING_HTTP_REDIRECT]]},
            "policy": {"default": {
                "lifetime": {"minutes": 15},
                "name_form": "urn:oasis:names:tc:SAML:2.0:attrname-format:uri",
            }},
            "name_id_format": [NAMEID_FORMAT_PERSISTENT],
        }},
    }
    if sp_metadata:
        conf["metadata"] = {"local": [sp_metadata]}
    return conf


def write_metadata(conf_class, conf_dict, path):
    conf = conf_class()
    conf.load(conf_dict)
    with open(path, "w") as f:
        f.write(str(entity_descriptor(conf)))


def satosa_files(cfg, d, base, sp_conf, oidc_key_path):
    """SATOSA's configuration: JSON is YAML, so each file is written as JSON."""
    def write(name, value):
        path = os.path.join(d, name)
        with open(path, "w") as f:
            json.dump(value, f)
        return path

    claims = ["person_identifier", "family_name", "given_name", "birthdate", "acr", "auth_time"]
    write("cdb.json", {cfg["client_id"]: {
        "client_id": cfg["client_id"], "client_secret": cfg["client_secret"],
        "redirect_uris": [cfg["redirect_uri"]], "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    }})
    internal = write("internal_attributes.yaml", {"attributes": {
        "person_identifier": {"saml": ["PersonIdentifier"], "openid": ["person_identifier"]},
        "family_name": {"saml": ["FamilyName"], "openid": ["family_name"]},
        "given_name": {"saml": ["FirstName"], "openid": ["given_name"]},
        "birthdate": {"saml": ["DateOfBirth"], "openid": ["birthdate"]},
        "acr": {"openid": ["acr"]},
        "auth_time": {"openid": ["auth_time"]},
    }})
    backend = write("saml2_backend.yaml", {
        "module": "satosa.backends.saml2.SAMLBackend", "name": "Saml2",
        "config": {"sp_config": sp_conf, "acr_mapping": {"": "http://eidas.europa.eu/LoA/substantial"}},
    })
    frontend = write("oidc_frontend.yaml", {
        "module": "satosa.frontends.openid_connect.OpenIDConnectFrontend", "name": "OIDC",
        "config": {
            "signing_key_path": oidc_key_path, "signing_key_id": "bridge-1",
            "client_db_path": os.path.join(d, "cdb.json"),
            "provider": {
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "scopes_supported": ["openid", "profile"],
                "id_token_lifetime": 600,
                "extra_id_token_claims": {cfg["client_id"]: claims},
            },
        },
    })
    micro = write("login_context.yaml", {
        "module": "estafette_satosa.LoginContext", "name": "LoginContext", "config": {},
    })
    return write("proxy_conf.yaml", {
        "BASE": base, "COOKIE_STATE_NAME": "SATOSA_STATE", "CONTEXT_STATE_DELETE": True,
        "STATE_ENCRYPTION_KEY": base64.b64encode(os.urandom(24)).decode(),
        "INTERNAL_ATTRIBUTES": internal, "BACKEND_MODULES": [backend],
        "FRONTEND_MODULES": [frontend], "MICRO_SERVICES": [micro],
        "CUSTOM_PLUGIN_MODULE_PATHS": [HERE],
        # Warnings and errors to stderr (the test keeps it as bridge.log).
        "LOGGING": {
            "version": 1, "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
            "root": {"level": "WARNING", "handlers": ["stderr"]},
        },
    })


def idp_app(server, accounts):
    """The eID's login page, and its SAML response (HTTP-POST binding)."""
    def page(body, status="200 OK"):
        return status, [("Content-Type", "text/html; charset=utf-8")], body.encode()

    def login_form(saml_request, relay_state, problem=""):
        alert = f'<p role="alert" id="problem">{html.escape(problem)}</p>' if problem else ""
        return page(f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>eID</title></head>
<body><main><h1>eID login (test)</h1>{alert}<form method="post" action="/sso/login">
<input type="hidden" name="SAMLRequest" value="{html.escape(saml_request)}">
<input type="hidden" name="RelayState" value="{html.escape(relay_state)}">
<label for="login">User name</label> <input id="login" name="login">
<label for="password">Password</label> <input id="password" name="password" type="password">
<button type="submit" id="submit">Log in</button></form></main></body></html>""")

    def respond(form):
        login = form.get("login", [""])[0]
        account = accounts.get(login)
        saml_request = form.get("SAMLRequest", [""])[0]
        relay_state = form.get("RelayState", [""])[0]
        if not account or account["password"] != form.get("password", [""])[0]:
            return login_form(saml_request, relay_state, "Unknown user or wrong password.")
        request = server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT).message
        acs = server.config.metadata.assertion_consumer_service(request.issuer.text, BINDING_HTTP_POST)[0]
        identity = {k: [account[k]] for k in ("PersonIdentifier", "FamilyName", "FirstName", "DateOfBirth")}
        response = server.create_authn_response(
            identity=identity, in_response_to=request.id, destination=acs["location"],
            sp_entity_id=request.issuer.text,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=login),
            authn={"class_ref": account["loa"], "authn_instant":
                   int(datetime.datetime.now(datetime.timezone.utc).timestamp())},
            sign_assertion=True,
        )
        binding = server.apply_binding(BINDING_HTTP_POST, str(response), acs["location"],
                                       relay_state, response=True)
        return page(binding["data"])

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/sso/redirect":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            status, headers, body = login_form(query.get("SAMLRequest", [""])[0],
                                               query.get("RelayState", [""])[0])
        elif path == "/sso/login" and environ["REQUEST_METHOD"] == "POST":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            form = parse_qs(environ["wsgi.input"].read(min(size, 65536)).decode())
            status, headers, body = respond(form)
        else:
            status, headers, body = page("not found", "404 Not Found")
        start_response(status, headers)
        return [body]

    return app


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve(app, port, tls):
    server = ThreadingServer(("127.0.0.1", port), QuietHandler)
    server.set_app(app)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    cfg = json.load(open(sys.argv[1]))
    d = cfg["dir"]
    os.makedirs(d, exist_ok=True)
    satosa_port, idp_port = free_port(), free_port()
    base = f"https://{cfg['host']}:{satosa_port}"
    idp_base = f"https://{cfg['host']}:{idp_port}"
    _, sp_key, sp_cert = key_and_cert(d, "sp")
    _, idp_key, idp_cert = key_and_cert(d, "idp")
    oidc_key, oidc_key_path, _ = key_and_cert(d, "oidc")
    sp_md, idp_md = os.path.join(d, "sp.xml"), os.path.join(d, "idp.xml")
    write_metadata(SPConfig, sp_config(base, sp_key, sp_cert), sp_md)
    write_metadata(IdPConfig, idp_config(idp_base, idp_key, idp_cert), idp_md)
    numbers = oidc_key.public_key().public_numbers()
    jwks_path = os.path.join(d, "jwks.json")
    with open(jwks_path, "w") as f:
        json.dump({"keys": [{"kty": "RSA", "kid": "bridge-1", "use": "sig", "alg": "RS256",
                             "n": b64url_int(numbers.n), "e": b64url_int(numbers.e)}]}, f)
    proxy_conf = satosa_files(cfg, d, base, sp_config(base, sp_key, sp_cert, idp_md), oidc_key_path)

    sys.path.insert(0, HERE)
    from satosa.proxy_server import make_app
    from satosa.satosa_config import SATOSAConfig
    satosa_app = make_app(SATOSAConfig(proxy_conf))
    idp_conf = IdPConfig()
    idp_conf.load(idp_config(idp_base, idp_key, idp_cert, sp_md))
    idp = Server(config=idp_conf)

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cfg["tls_cert"], cfg["tls_key"])
    serve(satosa_app, satosa_port, tls)
    serve(idp_app(idp, cfg["accounts"]), idp_port, tls)
    print(json.dumps({"issuer": base, "jwks": jwks_path}), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
