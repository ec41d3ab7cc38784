"""``stylepaste corpus``: describe a bank or frame corpus (``info``) and check that every shard is intact
(``verify``) before a team trains on it."""

from __future__ import annotations

import argparse
import json
import sys

from schemas.corpus import corpus_info, format_info, verify_corpus


def build_parser() -> argparse.ArgumentParser:
    """The ``stylepaste corpus`` argument parser."""
    p = argparse.ArgumentParser(
        prog="stylepaste corpus",
        description="Inspect a corpus folder written by stylepaste bank or augment (local path or fsspec URL).")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="rows, shards, bytes, schema, categories and licences with their pixel "
                                       "shares, settings, seeds, inputs and the code version that wrote it")
    info.add_argument("url", help="corpus folder (holds _manifest.json)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    verify = sub.add_parser("verify", help="check every shard against the size and SHA-256 recorded at write "
                                           "time, its row count and schema; exit 1 naming the first bad shard")
    verify.add_argument("url", help="corpus folder (holds _manifest.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stylepaste corpus``: 0 when fine, 1 when ``verify`` finds a problem."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "info":
        info = corpus_info(args.url)
        print(json.dumps(info, indent=1, sort_keys=True) if args.json else format_info(info))
        return 0
    problems = verify_corpus(args.url)
    if problems:
        print(f"stylepaste corpus verify: {args.url}: {len(problems)} problem(s); first: {problems[0]}",
              file=sys.stderr)
        for line in problems[1:]:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"{args.url}: every shard matches its manifest (size, SHA-256, rows, schema)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
