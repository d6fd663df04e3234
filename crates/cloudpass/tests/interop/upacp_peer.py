"""An independent UPACP signer and verifier, written from reference/upacp.md §3 with PyPI
`cryptography` (not from our Rust), for the interop tests of `cloudpass upacp`.

  upacp_peer.py pki DIR            make root, middle and a signing certificate
                                   (CN 041@Z20260101@cloudpass@00000001, serial 68759663125)
                                   with its PKCS#8 key, as PEM files in DIR
  upacp_peer.py sign DIR MODE      read a raw form on stdin, print it signed, raw; MODE is
                                   510 (SHA256withRSA over the hex SHA-256, signPubKeyCert),
                                   500 (SHA1withRSA over the hex SHA-1, certId) or
                                   11 / 12 (secure key in DIR/secure.key; 12 needs SM3, which
                                   `cryptography` lacks, so it is refused)
  upacp_peer.py verify DIR [NAME]  read a form on stdin (URL-encoded, as a POST body),
                                   verify signMethod 01 against DIR's root and middle, the
                                   CN's third part being NAME (default cloudpass); exit 0
                                   when it holds
"""

import base64
import datetime
import hashlib
import sys
from pathlib import Path
from urllib.parse import parse_qsl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


def parse_raw(text):
    """Split at top-level '&', each pair at its first '=' (nesting in {} and [])."""
    fields, depth, start = {}, 0, 0
    pairs = []
    for i, c in enumerate(text):
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
        elif c == "&" and depth == 0:
            pairs.append(text[start:i])
            start = i + 1
    pairs.append(text[start:])
    for pair in pairs:
        if pair:
            key, value = pair.split("=", 1)
            fields[key] = value
    return fields


def string_to_sign(fields):
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature")


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(subject_cn, issuer_cn, public_key, signing_key, serial, ca):
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject_cn))
        .issuer_name(name(issuer_cn))
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=5 * 365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(signing_key, hashes.SHA256())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_pki(directory):
    directory.mkdir(parents=True, exist_ok=True)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    middle_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = certificate("interop root", "interop root", root_key.public_key(), root_key, 1, True)
    middle = certificate("interop middle", "interop root", middle_key.public_key(), root_key, 2, True)
    leaf = certificate(
        "041@Z20260101@cloudpass@00000001", "interop middle", leaf_key.public_key(), middle_key,
        68759663125, False,
    )
    (directory / "root.pem").write_text(pem(root))
    (directory / "middle.pem").write_text(pem(middle))
    (directory / "sign.pem").write_text(pem(leaf))
    (directory / "sign.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "secure.key").write_text("88888888")


def sign(directory, mode, fields):
    fields = {k: v for k, v in fields.items() if v.strip() and k != "signature"}
    if mode in ("510", "500"):
        key = serialization.load_pem_private_key((directory / "sign.key").read_bytes(), None)
        cert = x509.load_pem_x509_certificate((directory / "sign.pem").read_bytes())
        fields["signMethod"] = "01"
        if mode == "510":
            fields["version"] = "5.1.0"
            fields["signPubKeyCert"] = pem(cert).replace("\n", "\r\n").rstrip("\r\n")
            digest, scheme = hashlib.sha256, hashes.SHA256()
        else:
            fields["version"] = "5.0.0"
            fields["certId"] = str(cert.serial_number)
            digest, scheme = hashlib.sha1, hashes.SHA1()
        hex_digest = digest(string_to_sign(fields).encode()).hexdigest()
        signature = key.sign(hex_digest.encode(), padding.PKCS1v15(), scheme)
        fields["signature"] = base64.b64encode(signature).decode()
    elif mode == "11":
        secure = (directory / "secure.key").read_text().strip()
        fields["signMethod"] = "11"
        key_hex = hashlib.sha256(secure.encode()).hexdigest()
        fields["signature"] = hashlib.sha256(
            (string_to_sign(fields) + "&" + key_hex).encode()
        ).hexdigest()
    else:
        sys.exit(f"mode {mode} is not offered here")
    return "&".join(f"{k}={v}" for k, v in fields.items())


def verify(directory, fields, signer_name):
    cert = x509.load_pem_x509_certificate(fields["signPubKeyCert"].encode())
    root = x509.load_pem_x509_certificate((directory / "root.pem").read_bytes())
    middle = x509.load_pem_x509_certificate((directory / "middle.pem").read_bytes())
    cert.verify_directly_issued_by(middle)
    middle.verify_directly_issued_by(root)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn.split("@")[2] == signer_name, cn
    now = datetime.datetime.now(datetime.timezone.utc)
    assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    hex_digest = hashlib.sha256(string_to_sign(fields).encode()).hexdigest()
    cert.public_key().verify(
        base64.b64decode(fields["signature"]), hex_digest.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    print("verified", fields["signMethod"], str(cert.serial_number))


def main():
    command, directory = sys.argv[1], Path(sys.argv[2])
    if command == "pki":
        make_pki(directory)
    elif command == "sign":
        print(sign(directory, sys.argv[3], parse_raw(sys.stdin.read().rstrip("\n"))))
    elif command == "verify":
        body = sys.stdin.read().strip()
        signer_name = sys.argv[3] if len(sys.argv) > 3 else "cloudpass"
        verify(directory, dict(parse_qsl(body, keep_blank_values=True, strict_parsing=True)), signer_name)


if __name__ == "__main__":
    main()
