"""Verify the DKIM signature of a message with dkimpy, an independent implementation.

usage: dkim_verify.py MESSAGE_FILE DNS_TXT_RECORD
The DNS lookup of <selector>._domainkey.<domain> is answered with DNS_TXT_RECORD.
Prints the signature's tags and exits 0 when it verifies, 1 when it does not.
"""
import sys

import dkim


def main() -> int:
    path, record = sys.argv[1], sys.argv[2]
    raw = open(path, "rb").read()
    # smtp-sink stores LF line endings; the wire format is CRLF.
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    d = dkim.DKIM(raw)
    ok = d.verify(dnsfunc=lambda name, timeout=5: record.encode())
    # The signature header, unfolded (its continuation lines start with white space).
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    sig = [l for l in head.split(b"\r\n") if l.lower().startswith(b"dkim-signature")]
    print("signature:", sig[0].decode() if sig else None)
    print("signed headers:", b":".join(d.include_headers).decode() if d.include_headers else None)
    print("verified:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
