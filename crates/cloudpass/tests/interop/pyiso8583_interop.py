#!/usr/bin/env python3
"""Interoperability check of the cloudpass ISO 8583 profile against pyiso8583.

The spec below is written from docs/iso8583-profile.md, not generated from our Rust table,
so that a mistake in either shows up as a disagreement.

    pyiso8583_interop.py encode    print our four messages encoded by pyiso8583, as JSON
                                   {name: {"hex": ..., "doc": {...}}}
    pyiso8583_interop.py decode    read {name: hex} on stdin, print {name: doc} decoded by
                                   pyiso8583 (binary fields as hex)
    pyiso8583_interop.py purchase  a terminal over plain TCP: read {"address", "terminal",
                                   "token", "expiry", "track2", "icc", "amount", "stan",
                                   "time"} on stdin, sign on (0800), send the contactless
                                   purchase (0200) with the phone's chip data, print both
                                   answers decoded as {"sign_on": doc, "purchase": doc}
"""

import json
import socket
import struct
import sys

import iso8583


def fixed(desc, length, data_enc="ascii"):
    return {"data_enc": data_enc, "len_enc": "ascii", "len_type": 0, "max_len": length, "desc": desc}


def llvar(desc, max_len):
    return {"data_enc": "ascii", "len_enc": "ascii", "len_type": 2, "max_len": max_len, "desc": desc}


def lllvar(desc, max_len, data_enc="ascii"):
    return {"data_enc": data_enc, "len_enc": "ascii", "len_type": 3, "max_len": max_len, "desc": desc}


# docs/iso8583-profile.md, "Wire conventions" and "Fields".
SPEC = {
    "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0, "desc": "no header"},
    "t": fixed("MTI", 4),
    "p": fixed("primary bitmap", 8, "b"),
    "1": fixed("secondary bitmap", 8, "b"),
    "2": llvar("primary account number", 19),
    "3": fixed("processing code", 6),
    "4": fixed("amount, transaction", 12),
    "5": fixed("amount, settlement", 12),
    "6": fixed("amount, cardholder billing", 12),
    "7": fixed("transmission date and time", 10),
    "9": fixed("conversion rate, settlement", 8),
    "10": fixed("conversion rate, cardholder billing", 8),
    "11": fixed("system trace audit number", 6),
    "12": fixed("time, local transaction", 6),
    "13": fixed("date, local transaction", 4),
    "14": fixed("date, expiration", 4),
    "15": fixed("date, settlement", 4),
    "16": fixed("date, conversion", 4),
    "18": fixed("merchant type", 4),
    "19": fixed("acquiring institution country code", 3),
    "22": fixed("point of service entry mode", 3),
    "23": fixed("card sequence number", 3),
    "25": fixed("point of service condition code", 2),
    "26": fixed("point of service PIN capture code", 2),
    "32": llvar("acquiring institution identification code", 11),
    "33": llvar("forwarding institution identification code", 11),
    "35": llvar("track 2 data", 37),
    "36": lllvar("track 3 data", 104),
    "37": fixed("retrieval reference number", 12),
    "38": fixed("authorization identification response", 6),
    "39": fixed("response code", 2),
    "41": fixed("card acceptor terminal identification", 8),
    "42": fixed("card acceptor identification code", 15),
    "43": fixed("card acceptor name and location", 40),
    "44": llvar("additional response data", 25),
    "45": llvar("track 1 data", 76),
    "48": lllvar("additional data, private", 512),
    "49": fixed("currency code, transaction", 3),
    "50": fixed("currency code, settlement", 3),
    "51": fixed("currency code, cardholder billing", 3),
    "52": fixed("PIN data", 8, "b"),
    "53": fixed("security related control information", 16),
    "54": lllvar("additional amounts", 40),
    "55": lllvar("ICC system related data", 255, "b"),
    "56": lllvar("payment account data", 512),
    "57": lllvar("additional data, issuer", 100),
    "59": lllvar("detail inquiry data", 600),
    "60": lllvar("reserved private", 100),
    "61": lllvar("cardholder authentication information", 200),
    "62": lllvar("switching data", 512, "b"),
    "63": lllvar("network data", 512),
    "64": fixed("message authentication code", 8, "b"),
    "70": fixed("network management information code", 3),
    "90": fixed("original data elements", 42),
    "95": fixed("replacement amounts", 42),
    "96": fixed("message security code", 8, "b"),
    "100": llvar("receiving institution identification code", 11),
    "102": llvar("account identification 1", 28),
    "103": llvar("account identification 2", 28),
    "128": fixed("message authentication code", 8, "b"),
}

TOKEN = "6231180000000016"

# A contactless tap's chip data: 9F26 ARQC, 9F27, 9F10 IAD, 9F37 UN, 9F36 ATC, 95 TVR, 9A date,
# 9C type, 9F02 amount, 5F2A currency, 82 AIP, 9F1A country, 9F03, 9F33, 9F34, 9F35.
ICC_REQUEST = (
    "9F2608" "1122334455667788" "9F270180" "9F1013" "07010103A000000100000000000000AABBCCDD"
    "9F3704" "0A0B0C0D" "9F3602" "0042" "9505" "0000000000" "9A03" "261125" "9C0100"
    "9F0206" "000000008800" "5F2A020156" "8202" "7C00" "9F1A020156" "9F0306" "000000000000"
    "9F3303" "E0E1C8" "9F3403" "1F0302" "9F350122"
)

# docs/iso8583-profile.md, fields 60, 63 and 90.
FIELD_60_NFC = "0000" "06000300000" "0000000023"
FIELD_63_TK = "TK037" "02016" + TOKEN + "06011" "40010030273"

MESSAGES = {
    "0200 contactless purchase": {
        "t": "0200", "2": TOKEN, "3": "000000", "4": "000000008800", "7": "1125120501",
        "11": "004711", "12": "200501", "13": "1125", "14": "3012", "18": "5812", "22": "072",
        "23": "001", "25": "00", "32": "48020000", "33": "48020000",
        "35": TOKEN + "=30122010000000000", "37": "533012004711", "41": "T0000042",
        "42": "898310054110042", "43": "Jasmine Noodle House".ljust(25) + "Hangzhou".ljust(12) + "CHN", "49": "156",
        "55": ICC_REQUEST, "60": FIELD_60_NFC, "128": "0102030405060708",
    },
    "0210 response": {
        "t": "0210", "2": TOKEN, "3": "000000", "4": "000000008800", "7": "1125120502",
        "11": "004711", "25": "00", "32": "48020000", "33": "48020000", "37": "533012004711",
        "38": "Z9Y8X7", "39": "00", "41": "T0000042", "42": "898310054110042", "49": "156",
        "55": "910A" "9AF514C100000000" "3030" "8A023030", "63": FIELD_63_TK,
        "128": "1112131415161718",
    },
    "0800 sign-on": {
        "t": "0800", "7": "1125070000", "11": "000001", "32": "48020000", "41": "T0000042",
        "42": "898310054110042", "53": "2600000000000000", "70": "001",
    },
    "0400 reversal": {
        "t": "0400", "2": TOKEN, "3": "000000", "4": "000000008800", "7": "1125120545",
        "11": "004712", "22": "072", "25": "00", "32": "48020000", "33": "48020000",
        "37": "533012004711", "41": "T0000042", "42": "898310054110042", "49": "156",
        "60": "4021", "90": "0200" "004711" "1125120501" "00048020000" "00048020000",
    },
}


def clean(doc):
    """A decoded doc without the bitmaps pyiso8583 adds."""
    return {key: value for key, value in doc.items() if key not in ("h", "p", "1")}


def exchange(connection, doc):
    """Sends one message framed with a 2-byte big-endian length; returns the decoded answer."""
    raw, _ = iso8583.encode(dict(doc), SPEC)
    connection.sendall(struct.pack(">H", len(raw)) + bytes(raw))
    header = read_exactly(connection, 2)
    (length,) = struct.unpack(">H", header)
    answer, _ = iso8583.decode(bytearray(read_exactly(connection, length)), SPEC)
    return clean(answer)


def read_exactly(connection, count):
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise SystemExit("the switch closed the connection")
        data += chunk
    return data


def purchase(order):
    host, port = order["address"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        sign_on = exchange(connection, {
            "t": "0800", "7": order["time"], "11": "000001", "32": order["acquirer"],
            "41": order["terminal"], "42": order["merchant"], "53": "2600000000000000",
            "70": "001",
        })
        answer = exchange(connection, {
            "t": "0200", "2": order["token"], "3": "000000", "4": "%012d" % order["amount"],
            "7": order["time"], "11": order["stan"], "12": order["time"][4:], "13": order["time"][:4],
            "14": order["expiry"], "18": "5411", "22": "072", "25": "00", "32": order["acquirer"],
            "35": order["track2"], "37": order["time"][4:] + order["stan"], "41": order["terminal"],
            "42": order["merchant"], "43": "pyiso8583 corner shop".ljust(25) + "Shanghai".ljust(12) + "CHN",
            "49": "156", "55": order["icc"], "60": FIELD_60_NFC,
        })
    json.dump({"sign_on": sign_on, "purchase": answer}, sys.stdout)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "encode":
        out = {}
        for name, doc in MESSAGES.items():
            raw, _ = iso8583.encode(dict(doc), SPEC)
            out[name] = {"hex": bytes(raw).hex().upper(), "doc": doc}
        json.dump(out, sys.stdout)
    elif mode == "decode":
        wanted = json.load(sys.stdin)
        out = {}
        for name, hex_message in wanted.items():
            doc, _ = iso8583.decode(bytearray.fromhex(hex_message), SPEC)
            out[name] = clean(doc)
        json.dump(out, sys.stdout)
    elif mode == "purchase":
        purchase(json.load(sys.stdin))
    else:
        sys.exit("usage: pyiso8583_interop.py encode|decode|purchase")


if __name__ == "__main__":
    main()
