#!/usr/bin/env python3
"""A test PID provider and a test EU Digital Identity Wallet, built on the
OpenWallet Foundation's SD-JWT reference implementation (`sd-jwt` on PyPI,
pinned in requirements.txt) and jwcrypto: an implementation independent of
ours, for the wallet login tests (gateway/tests/wallet_login.rs).

  provider  DIR CERT KEY   start the PID provider: a P-256 issuer key, its
                           JWKS, and an HTTPS server for its status list;
                           prints one JSON line {issuer, port, status_uri}
  status    DIR SIZE [REVOKED...]   write its status list (1 bit per PID)
  issue     DIR HOLDER PAN INDEX [COUNTRY [EXP]]   issue a German PID to a
                           new holder key (PAN "-" for none; EXP seconds
                           from now, negative for an expired PID)
  present   HOLDER URL ROOT WEB_CA [options]   the wallet: open the request
                           at URL (openid4vp://), check it, present, post;
                           prints one JSON line {status, body}. ROOT: the
                           federation root (request signatures); WEB_CA:
                           roots of the home node's web address

The requests of the home node are checked as a wallet must: the request
object's signature with the certificate in x5c, that certificate issued by
the federation root, and the client id x509_hash: its SHA-256.
"""

import base64
import hashlib
import http.server
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
import zlib

from cryptography import x509
from jwcrypto import jwk, jws

from sd_jwt.common import SDObj
from sd_jwt.holder import SDJWTHolder
from sd_jwt.issuer import SDJWTIssuer

PID_VCT = "urn:eudi:pid:1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f)


def provider_info(directory):
    return read_json(os.path.join(directory, "provider.json"))


def issuer_key(directory):
    return jwk.JWK(**read_json(os.path.join(directory, "issuer.jwk")))


# ---------------------------------------------------------------- provider


def provider(directory, cert, key):
    os.makedirs(directory, exist_ok=True)
    signing = jwk.JWK.generate(kty="EC", crv="P-256", kid="pid-de-1", alg="ES256", use="sig")
    write_json(os.path.join(directory, "issuer.jwk"), json.loads(signing.export_private()))
    write_json(os.path.join(directory, "jwks.json"), {"keys": [json.loads(signing.export_public())]})
    status_file = os.path.join(directory, "status.jwt")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/status/1" or not os.path.exists(status_file):
                self.send_error(404)
                return
            with open(status_file, "rb") as f:
                body = f.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/statuslist+jwt")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            sys.stderr.write("status list fetched\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    issuer = f"https://127.0.0.1:{port}"
    info = {"issuer": issuer, "port": port, "status_uri": f"{issuer}/status/1"}
    write_json(os.path.join(directory, "provider.json"), info)
    print(json.dumps(info), flush=True)
    server.serve_forever()


def status(directory, size, revoked):
    """A Token Status List of `size` one-bit entries, `revoked` set."""
    info = provider_info(directory)
    bits = bytearray((size + 7) // 8)
    for index in revoked:
        bits[index // 8] |= 1 << (index % 8)
    now = int(time.time())
    claims = {
        "sub": info["status_uri"],
        "iat": now,
        "exp": now + 3600,
        "ttl": 300,
        "status_list": {"bits": 1, "lst": b64(zlib.compress(bytes(bits)))},
    }
    key = issuer_key(directory)
    token = jws.JWS(json.dumps(claims))
    token.add_signature(key, alg="ES256", protected=json.dumps(
        {"alg": "ES256", "typ": "statuslist+jwt", "kid": key.kid}))
    with open(os.path.join(directory, "status.jwt"), "w") as f:
        f.write(token.serialize(compact=True))


def issue(directory, holder_dir, pan, index, country="DE", exp_offset=365 * 86400):
    info = provider_info(directory)
    os.makedirs(holder_dir, exist_ok=True)
    holder = jwk.JWK.generate(kty="EC", crv="P-256")
    write_json(os.path.join(holder_dir, "holder.jwk"), json.loads(holder.export_private()))
    now = int(time.time())
    claims = {
        "iss": info["issuer"],
        "vct": PID_VCT,
        "iat": now - 86400,
        "exp": now + int(exp_offset),
        "status": {"status_list": {"idx": index, "uri": info["status_uri"]}},
        SDObj("family_name"): "Müller",
        SDObj("given_name"): "Jonas",
        SDObj("birthdate"): "1985-07-14",
        SDObj("nationalities"): ["DE"],
        SDObj("issuing_country"): country,
        SDObj("issuing_authority"): "Bundesdruckerei (test)",
    }
    if pan != "-":
        claims[SDObj("personal_administrative_number")] = pan
    key = issuer_key(directory)
    issuer = SDJWTIssuer(
        claims,
        key,
        holder_key=jwk.JWK(**json.loads(holder.export_public())),
        sign_alg="ES256",
        add_decoy_claims=True,
        extra_header_parameters={"typ": "dc+sd-jwt", "kid": key.kid},
    )
    with open(os.path.join(holder_dir, "pid.txt"), "w") as f:
        f.write(issuer.sd_jwt_issuance)


# ---------------------------------------------------------------- wallet


def fetch(url, web_ca, data=None):
    context = ssl.create_default_context(cafile=web_ca)
    request = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(request, context=context, timeout=20) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def checked_request(url, root, web_ca):
    """The request object the authorization request names, checked."""
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    client_id = query["client_id"][0]
    status_code, jar = fetch(query["request_uri"][0], web_ca)
    if status_code != 200:
        return None, {"status": status_code, "body": json.loads(jar or "{}")}
    header = json.loads(unb64(jar.split(".")[0]))
    assert header["typ"] == "oauth-authz-req+jwt", header
    leaf_der = base64.b64decode(header["x5c"][0])
    leaf = x509.load_der_x509_certificate(leaf_der)
    with open(root, "rb") as f:
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(f.read()))
    expected = "x509_hash:" + b64(hashlib.sha256(leaf_der).digest())
    assert client_id == expected, (client_id, expected)
    token = jws.JWS()
    token.deserialize(jar)
    token.verify(jwk.JWK.from_pyca(leaf.public_key()), alg=header["alg"])
    request = json.loads(token.payload)
    assert request["client_id"] == client_id
    assert request["response_mode"] == "direct_post"
    assert request["dcql_query"]["credentials"][0]["format"] == "dc+sd-jwt"
    return request, None


def present(holder_dir, url, root, web_ca, options):
    request, failure = checked_request(url, root, web_ca)
    if failure:
        print(json.dumps(failure), flush=True)
        return
    if "decline" in options:
        # The person says no in the wallet (OpenID4VP error response).
        form = urllib.parse.urlencode({"error": "access_denied", "state": request["state"]})
        status_code, body = fetch(request["response_uri"], web_ca, data=form.encode())
        print(json.dumps({"status": status_code, "body": json.loads(body or "{}")}), flush=True)
        return
    if "replay" in options:
        with open(options["replay"]) as f:
            presentation = f.read()
    else:
        with open(os.path.join(holder_dir, "pid.txt")) as f:
            issuance = f.read()
        holder_key = jwk.JWK(**read_json(os.path.join(holder_dir, "holder.jwk")))
        if "other_key" in options:
            holder_key = jwk.JWK.generate(kty="EC", crv="P-256")
        wanted = {c["path"][0]: True for c in request["dcql_query"]["credentials"][0]["claims"]}
        holder = SDJWTHolder(issuance)
        if "no_kb" in options:
            holder.create_presentation(wanted)
        else:
            holder.create_presentation(
                wanted,
                nonce=options.get("nonce", request["nonce"]),
                aud=options.get("aud", request["client_id"]),
                holder_key=holder_key,
                sign_alg="ES256",
            )
        presentation = holder.sd_jwt_presentation
        if "tamper" in options:
            parts = presentation.split("~")
            for i, part in enumerate(parts[1:-1], start=1):
                salt, name, value = json.loads(unb64(part))
                if name == "given_name":
                    parts[i] = b64(json.dumps([salt, name, "Johanna"]).encode())
            presentation = "~".join(parts)
    if "save" in options:
        with open(options["save"], "w") as f:
            f.write(presentation)
    if "no_post" in options:
        print(json.dumps({"status": None, "body": {}}), flush=True)
        return
    form = urllib.parse.urlencode({
        "vp_token": json.dumps({"pid": [presentation]}),
        "state": request["state"],
    }).encode()
    status_code, body = fetch(request["response_uri"], web_ca, data=form)
    print(json.dumps({"status": status_code, "body": json.loads(body or "{}")}), flush=True)


def main(argv):
    command, args = argv[1], argv[2:]
    if command == "provider":
        provider(*args)
    elif command == "status":
        status(args[0], int(args[1]), [int(i) for i in args[2:]])
    elif command == "issue":
        issue(args[0], args[1], args[2], int(args[3]), *args[4:])
    elif command == "present":
        options = {}
        for option in args[4:]:
            name, _, value = option.partition("=")
            options[name.lstrip("-").replace("-", "_")] = value
        present(args[0], args[1], args[2], args[3], options)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
