"""Checks the payment SDK's synchronous result as docs/sdk.md section 3 tells an institution
to, written from the document alone with PyPI `cryptography`.

usage: verify_app_result.py SIGN_CERT_PEM TN RESULT_DATA_JSON
Prints the verified pay_result, or exits 1 saying which check failed."""

import base64
import hashlib
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding


def main():
    cert_path, tn, result_data = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    result = json.loads(result_data)
    data, sign = result["data"], result["sign"]
    fields = dict(pair.split("=", 1) for pair in data.split("&"))
    # 1. cert_id is the signing certificate's serial, in decimal.
    if fields.get("cert_id") != str(cert.serial_number):
        sys.exit("cert_id is not the signing certificate's serial")
    # 2. SHA256withRSA (PKCS#1 v1.5) over the lowercase hex SHA-256 of data.
    digest = hashlib.sha256(data.encode("utf-8")).hexdigest().encode("ascii")
    try:
        cert.public_key().verify(base64.b64decode(sign), digest, padding.PKCS1v15(), hashes.SHA256())
    except Exception:
        sys.exit("the signature does not verify")
    # 3. The TN is the order's.
    if fields.get("tn") != tn:
        sys.exit("the TN is not this order's")
    print(fields["pay_result"])


if __name__ == "__main__":
    main()
