"""Verify every DKIM signature of a message with dkimpy, an independent implementation.

usage: dkim_verify.py MESSAGE_FILE RECORD...
Each RECORD is the DNS TXT record of a key, optionally prefixed with `SELECTOR:` — the lookup of
<SELECTOR>._domainkey.<domain> is answered with it (a record without a selector answers every
lookup). Prints one line per signature with its tags, signed headers and result, and exits 0
when there is at least one signature and every one of them verifies, 1 otherwise.
"""
import sys

import dkim


def main() -> int:
    path, records = sys.argv[1], sys.argv[2:]
    raw = open(path, "rb").read()
    # smtp-sink stores LF line endings; the wire format is CRLF.
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    by_selector, default = {}, None
    for r in records:
        if ":" in r.split(";", 1)[0]:
            selector, record = r.split(":", 1)
            by_selector[selector.encode()] = record.encode()
        else:
            default = r.encode()

    def dns(name, timeout=5):
        selector = name.split(b"._domainkey.", 1)[0]
        return by_selector.get(selector, default)

    # The signature headers, unfolded (continuation lines start with white space).
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    sigs = [l for l in head.split(b"\r\n") if l.lower().startswith(b"dkim-signature")]
    print("signatures:", len(sigs))
    ok = len(sigs) > 0
    for i, sig in enumerate(sigs):
        d = dkim.DKIM(raw)
        verified = d.verify(idx=i, dnsfunc=dns)
        ok = ok and verified
        signed = b":".join(d.include_headers).decode() if d.include_headers else None
        print(f"signature {i}: {sig.decode()}")
        print(f"signed headers {i}: {signed}")
        print(f"verified {i}: {verified}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
