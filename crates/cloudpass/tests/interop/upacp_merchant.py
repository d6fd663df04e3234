"""An independent UPACP merchant, written from reference/upacp.md and docs/upacp.md with
PyPI `cryptography` and `requests` (not from our Rust), run against a live `cloudpass serve`.

  upacp_merchant.py BASE_URL UPACP_DIR SCENARIO

UPACP_DIR holds what an integrator is given: root.pem and middle.pem (to verify our
answers) and merchant-777290058110048.pfx (the key and certificate to sign requests with,
under UnionPay's test password 000000, as an SDK loads acp_test_sign.pfx). Prints one JSON object
with what happened; exits non-zero when an answer does not verify.

Scenarios:
  pay        app consume -> tn -> paid through the payment control's JSON API -> query
  returns    two paid consumes: partial refunds (one repeated byte for byte), a refund above
             what remains, an undo after refunds; an undo of the other; a refund after it
  recon      two paid consumes and a refund, then the day's reconciliation file (76),
             inflated and split into its lines
  backpay    the encryption certificate (95), then a consume paid at once from the server
             (backTransReq.do, txnType 01) with accNo, the PIN block and the CVN2/expiry
             encrypted to it; a query of each
  sms        a card without a published SMS code (the bank's back office reissues one): a
             TN paid with the code the JSON API had texted to the card's phone (read from the
             sandbox SMS inbox), and a back consume preceded by txnType 77
  refusals   a tampered request (11), a reused orderId (12), a missing field (13), an unknown
             merchant (31), a query of an unknown order (34), a byte-identical retry (same tn)
"""

import base64
import datetime
import hashlib
import json
import sys
import zlib
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

MER_ID = "777290058110048"
SIGNER = "00040000:SIGN"


def beijing_now():
    return datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).strftime("%Y%m%d%H%M%S")


def string_to_sign(fields):
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature")


def parse_raw(text):
    """Split at top-level '&' (nesting in {} and []), each pair at its first '='."""
    fields, depth, start, pairs = {}, 0, 0, []
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


class Merchant:
    def __init__(self, base_url, upacp_dir):
        self.base = base_url.rstrip("/")
        self.upacp_dir = upacp_dir
        d = Path(upacp_dir)
        self.key, self.cert, chain = pkcs12.load_key_and_certificates(
            (d / f"merchant-{MER_ID}.pfx").read_bytes(), b"000000")
        self.root = x509.load_pem_x509_certificate((d / "root.pem").read_bytes())
        self.middle = x509.load_pem_x509_certificate((d / "middle.pem").read_bytes())
        # The PFX carries the chain a merchant is given: the middle CA, then the root.
        assert chain == [self.middle, self.root], "the PFX's chain"
        self.cert.verify_directly_issued_by(self.middle)

    def sign(self, fields):
        fields = {k: v for k, v in fields.items() if v != ""}
        fields["certId"] = str(self.cert.serial_number)
        fields["signMethod"] = "01"
        digest = hashlib.sha256(string_to_sign(fields).encode()).hexdigest()
        signature = self.key.sign(digest.encode(), padding.PKCS1v15(), hashes.SHA256())
        fields["signature"] = base64.b64encode(signature).decode()
        return fields

    def verify(self, fields):
        """As UnionPay's SDK verifies: chain, dates, CN, then the signature."""
        cert = x509.load_pem_x509_certificate(fields["signPubKeyCert"].encode())
        cert.verify_directly_issued_by(self.middle)
        self.middle.verify_directly_issued_by(self.root)
        now = datetime.datetime.now(datetime.timezone.utc)
        assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc, "certificate dates"
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn.split("@")[2] == SIGNER, cn
        digest = hashlib.sha256(string_to_sign(fields).encode()).hexdigest()
        cert.public_key().verify(
            base64.b64decode(fields["signature"]), digest.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return fields

    def post(self, path, fields, signed=True):
        body = self.sign(fields) if signed else fields
        response = requests.post(
            self.base + path,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"},
            timeout=30,
        )
        response.raise_for_status()
        return self.verify(parse_raw(response.content.decode("utf-8")))

    def consume(self, order_id, amount, txn_time, **extra):
        fields = {
            "version": "5.1.0", "encoding": "UTF-8", "txnType": "01", "txnSubType": "01",
            "bizType": "000201", "channelType": "08", "accessType": "0", "merId": MER_ID,
            "orderId": order_id, "txnTime": txn_time, "txnAmt": str(amount), "currencyCode": "156",
            "backUrl": "https://merchant.example/notify", "reqReserved": "{basket=7&note=x}",
        }
        fields.update(extra)
        return fields

    def encryption(self):
        """The platform's encryption certificate (txnType 95), checked against our middle CA,
        and `seal`: base64 of RSA PKCS#1 v1.5 to it."""
        answer = self.post("/gateway/api/backTransReq.do", {
            "version": "5.1.0", "encoding": "UTF-8", "txnType": "95", "txnSubType": "00",
            "bizType": "000000", "accessType": "0", "merId": MER_ID, "certType": "01",
            "txnTime": beijing_now(),
        })
        cert = x509.load_pem_x509_certificate(answer["encryptPubKeyCert"].encode())
        cert.verify_directly_issued_by(self.middle)

        def seal(data):
            return base64.b64encode(cert.public_key().encrypt(data, padding.PKCS1v15())).decode()

        return cert, seal

    def query(self, order_id, txn_time):
        return self.post("/gateway/api/queryTrans.do", {
            "version": "5.1.0", "encoding": "UTF-8", "txnType": "00", "txnSubType": "00",
            "bizType": "000000", "accessType": "0", "merId": MER_ID, "orderId": order_id,
            "txnTime": txn_time,
        })


def pay_scenario(m):
    txn_time = beijing_now()
    order_id = "PY" + txn_time + "01"
    issued = m.post("/gateway/api/appTransReq.do", m.consume(order_id, 1250, txn_time))
    before = m.query(order_id, txn_time)
    paid = requests.post(
        f"{m.base}/gateway/pay/{issued['tn']}",
        json={"card_number": "6226388000000095", "sms_code": "111111", "cvn2": "248", "expiry": "2912"},
        timeout=30,
    ).json()
    after = m.query(order_id, txn_time)
    return {"issued": issued, "before": before, "paid": paid, "after": after}


def back(m, kind, order_id, txn_time, amount, orig_qry_id):
    return m.sign({
        "version": "5.1.0", "encoding": "UTF-8", "txnType": kind, "txnSubType": "00",
        "bizType": "000201", "channelType": "07", "accessType": "0", "merId": MER_ID,
        "orderId": order_id, "txnTime": txn_time, "txnAmt": str(amount), "currencyCode": "156",
        "backUrl": "https://merchant.example/notify", "origQryId": orig_qry_id,
    })


def paid_order(m, suffix, amount, card):
    txn_time = beijing_now()
    order_id = "PY" + txn_time + suffix
    issued = m.post("/gateway/api/appTransReq.do", m.consume(order_id, amount, txn_time))
    paid = requests.post(f"{m.base}/gateway/pay/{issued['tn']}", json=card, timeout=30).json()
    return paid["query_id"], txn_time


def returns_scenario(m):
    out = {}
    credit = {"card_number": "6226388000000095", "sms_code": "111111", "cvn2": "248", "expiry": "2912"}
    debit = {"card_number": "6226090000000048", "sms_code": "123456", "pin": "111101"}
    qid, txn_time = paid_order(m, "10", 1000, credit)
    backs = "/gateway/api/backTransReq.do"
    first = back(m, "04", "PY" + txn_time + "11", txn_time, 300, qid)
    out["refund_300"] = m.post(backs, dict(first), signed=False)
    out["refund_300_again"] = m.post(backs, dict(first), signed=False)
    out["refund_800"] = m.post(backs, back(m, "04", "PY" + txn_time + "12", txn_time, 800, qid), signed=False)
    out["refund_700"] = m.post(backs, back(m, "04", "PY" + txn_time + "13", txn_time, 700, qid), signed=False)
    out["undo_refunded"] = m.post(backs, back(m, "31", "PY" + txn_time + "14", txn_time, 1000, qid), signed=False)
    out["query_refund"] = m.query("PY" + txn_time + "11", txn_time)
    qid, txn_time = paid_order(m, "20", 500, debit)
    out["undo_partial"] = m.post(backs, back(m, "31", "PY" + txn_time + "21", txn_time, 499, qid), signed=False)
    out["undo"] = m.post(backs, back(m, "31", "PY" + txn_time + "22", txn_time, 500, qid), signed=False)
    out["refund_undone"] = m.post(backs, back(m, "04", "PY" + txn_time + "23", txn_time, 100, qid), signed=False)
    out["unknown_original"] = m.post(backs, back(m, "04", "PY" + txn_time + "24", txn_time, 100, "123456789012345678901"), signed=False)
    return out


def recon_scenario(m):
    credit = {"card_number": "6226388000000095", "sms_code": "111111", "cvn2": "248", "expiry": "2912"}
    debit = {"card_number": "6216261000000000018", "sms_code": "111111", "pin": "123456"}
    first, txn_time = paid_order(m, "30", 1000, credit)
    refund = m.post("/gateway/api/backTransReq.do", back(m, "04", "PY" + txn_time + "31", txn_time, 250, first), signed=False)
    second, _ = paid_order(m, "32", 300, debit)
    # The clearing day runs 23:00 to 23:00 Beijing: the calendar date of UTC + 9 hours.
    settle = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=9)).strftime("%m%d")
    answer = m.post("/gateway/file/", {
        "version": "5.1.0", "encoding": "UTF-8", "txnType": "76", "txnSubType": "01",
        "bizType": "000000", "accessType": "0", "merId": MER_ID, "settleDate": settle,
        "txnTime": beijing_now(), "fileType": "00",
    })
    text = zlib.decompress(base64.b64decode(answer["fileContent"])).decode("utf-8")
    return {
        "consumes": [first, second],
        "refund": refund.get("queryId"),
        "file": {k: v for k, v in answer.items() if k != "fileContent"},
        "lines": [line.split("|") for line in text.splitlines()],
    }


def pin_block(pin, pan):
    """ISO 9564 format 0: the PIN field XOR the 12 card digits before the check digit."""
    field = bytes.fromhex(f"{len(pin):02d}{pin}".ljust(16, "F"))
    account = bytes.fromhex("0000" + pan[-13:-1])
    return bytes(a ^ b for a, b in zip(field, account))


def backpay_scenario(m):
    cert, seal = m.encryption()

    def customer_info(inner):
        return base64.b64encode(("{" + inner + "}").encode()).decode()

    out = {}
    cards = {
        "debit": ("6226090000000048", "smsCode=111111&pin=" + seal(pin_block("111101", "6226090000000048"))),
        "credit": ("6226388000000095", "smsCode=111111&encryptedInfo=" + seal(b"phoneNo=18100000000&cvn2=248&expired=2912")),
        "wrong_sms": ("6226388000000095", "smsCode=000001&encryptedInfo=" + seal(b"cvn2=248&expired=2912")),
    }
    for n, (name, (pan, info)) in enumerate(cards.items()):
        txn_time = beijing_now()
        order_id = "PY" + txn_time + f"4{n + 1}"
        fields = m.consume(order_id, 600 + n, txn_time, bizType="000301", accNo=seal(pan.encode()),
                           customerInfo=customer_info(info), encryptCertId=str(cert.serial_number))
        paid = m.post("/gateway/api/backTransReq.do", fields)
        out[name] = {"answer": paid, "query": m.query(order_id, txn_time)}
    return out


def latest_code(m, phone):
    """The six digits of the newest text to `phone` in the sandbox SMS inbox."""
    key = (Path(m.upacp_dir).parent / "sandbox-operator.key").read_text().strip()
    inbox = requests.get(f"{m.base}/sim/issuer/v1/sms", params={"phone": phone},
                         headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    text = inbox["messages"][0]["text"]
    return next(word for word in text.split() if len(word) == 6 and word.isdigit())


def sms_scenario(m):
    card, phone, pin = "6216261000000000026", "13552535506", "123456"
    requests.post(f"{m.base}/sim/issuer/v1/cards/reissue",
                  headers={"Authorization": "Bearer sk_sandbox_issuer"},
                  json={"card_number": "6216261000000000018", "new_card_number": card,
                        "new_expiry": "3112"}, timeout=30)
    out = {}
    txn_time = beijing_now()
    issued = m.post("/gateway/api/appTransReq.do", m.consume("PY" + txn_time + "50", 321, txn_time))
    tn = issued["tn"]
    out["sent"] = requests.post(f"{m.base}/gateway/pay/{tn}/sms", json={"card_number": card},
                                timeout=30).json()
    out["paid"] = requests.post(f"{m.base}/gateway/pay/{tn}", json={
        "card_number": card, "sms_code": latest_code(m, phone), "pin": pin}, timeout=30).json()

    cert, seal = m.encryption()

    txn_time = beijing_now()
    order = m.consume("PY" + txn_time + "51", 654, txn_time, bizType="000301",
                      accNo=seal(card.encode()), encryptCertId=str(cert.serial_number))
    out["sms_77"] = m.post("/gateway/api/backTransReq.do", dict(order, txnType="77", txnSubType="02"))
    info = "{smsCode=" + latest_code(m, phone) + "&pin=" + seal(pin_block(pin, card)) + "}"
    out["back_consume"] = m.post("/gateway/api/backTransReq.do",
                                 dict(order, customerInfo=base64.b64encode(info.encode()).decode()))
    return out


def token_scenario(m):
    """Token payment as docs/upacp.md tells it: open a card (79), pay by its token (01 with
    bizType 000902; a debit card's PIN block formed with the token), delete it (74)."""
    cert, seal = m.encryption()

    def b64(text):
        return base64.b64encode(text.encode()).decode()

    tr_id = "62000000048"
    common = {"version": "5.1.0", "encoding": "UTF-8", "bizType": "000902", "accessType": "0",
              "channelType": "07", "merId": MER_ID, "encryptCertId": str(cert.serial_number)}

    def open_card(n, pan, info):
        txn_time = beijing_now()
        opened = m.post("/gateway/api/backTransReq.do", dict(
            common, txnType="79", txnSubType="00", orderId="PY" + txn_time + f"6{n}",
            txnTime=txn_time, accNo=seal(pan.encode()), customerInfo=b64("{" + info + "}"),
            tokenPayData="{trId=" + tr_id + "&tokenType=01}"))
        token = parse_raw(opened["tokenPayData"][1:-1])["token"]
        return opened, token

    def pay(n, token, amount, info):
        txn_time = beijing_now()
        return m.post("/gateway/api/backTransReq.do", dict(
            common, txnType="01", txnSubType="01", orderId="PY" + txn_time + f"7{n}",
            txnTime=txn_time, txnAmt=str(amount), currencyCode="156",
            backUrl="https://merchant.example/notify", customerInfo=b64("{" + info + "}"),
            tokenPayData="{token=" + token + "&trId=" + tr_id + "}"))

    out = {}
    out["debit_open"], debit = open_card(1, "6226090000000048", "smsCode=111111")
    out["debit_pay"] = pay(1, debit, 701, "smsCode=111111&pin=" + seal(pin_block("111101", debit)))
    out["credit_open"], credit = open_card(
        2, "6226388000000095", "smsCode=111111&encryptedInfo=" + seal(b"expired=2912"))
    cvn2 = "smsCode=111111&encryptedInfo=" + seal(b"cvn2=248")
    out["credit_pay"] = pay(2, credit, 702, cvn2)
    txn_time = beijing_now()
    out["delete"] = m.post("/gateway/api/backTransReq.do", dict(
        common, txnType="74", txnSubType="01", orderId="PY" + txn_time + "80", txnTime=txn_time,
        tokenPayData="{token=" + credit + "&trId=" + tr_id + "}"))
    out["after_delete"] = pay(3, credit, 703, cvn2)
    return out


def refusals_scenario(m):
    txn_time = beijing_now()
    order_id = "PY" + txn_time + "02"
    out = {}
    request = m.consume(order_id, 100, txn_time)
    signed = m.sign(dict(request))
    tampered = dict(signed, txnAmt="101")
    out["tampered"] = m.post("/gateway/api/appTransReq.do", tampered, signed=False)
    first = m.post("/gateway/api/appTransReq.do", dict(signed), signed=False)
    retry = m.post("/gateway/api/appTransReq.do", dict(signed), signed=False)
    out["retry_same_tn"] = first["tn"] == retry["tn"]
    out["reused"] = m.post("/gateway/api/appTransReq.do", m.consume(order_id, 200, txn_time))
    missing = m.consume("PY" + txn_time + "03", 100, txn_time)
    del missing["backUrl"]
    out["missing"] = m.post("/gateway/api/appTransReq.do", missing)
    out["unknown_merchant"] = m.post("/gateway/api/appTransReq.do", dict(m.consume("PY" + txn_time + "04", 100, txn_time), merId="777290058119999"))
    out["unknown_order"] = m.query("NOSUCHORDER1", txn_time)
    return out


def main():
    base, upacp_dir, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
    merchant = Merchant(base, upacp_dir)
    scenarios = {
        "pay": pay_scenario, "returns": returns_scenario, "recon": recon_scenario,
        "refusals": refusals_scenario, "backpay": backpay_scenario, "sms": sms_scenario,
        "token": token_scenario,
    }
    result = scenarios[scenario](merchant)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
