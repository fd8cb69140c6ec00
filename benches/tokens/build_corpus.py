#!/usr/bin/env python3
"""Builds the token-estimate corpus in benches/tokens/corpus/ from real text on this machine
and from two registry packages (see corpus/README.md for each file's source and license).

Every output file is JSON Lines: one line per request, a JSON array of message texts
(user, assistant, user, ... in turn). The selection is deterministic: the same inputs give
the same files.

Inputs (defaults are where they are on the project's machine):
  --gnome-help   usr/share/help of Debian's gnome-user-docs 43.0-2, unpacked with
                 `apt-get download gnome-user-docs && dpkg-deb -x gnome-user-docs_*.deb DIR`
  --chatterbot   chatterbot_corpus/data of PyPI chatterbot-corpus 1.3.3, unpacked with
                 `pip download --no-deps chatterbot-corpus==1.3.3` and unzip
  --locale       /usr/share/locale (the Arabic GTK/GLib catalogs)
  --cargo-src    ~/.cargo/registry/src/<index> (Rust sources of crates.io crates)
  --python-lib   the lib/python3.11 of a CPython install
  --node-modules /usr/lib/node_modules/npm/node_modules
  --site-packages  a site-packages holding boto3 1.43.11 and cryptography 48.0.0

Needs PyYAML (for the chatterbot YAML files).
"""

import argparse
import gettext
import json
import os
import re
import xml.etree.ElementTree as ET

MALLARD = "{http://projectmallard.org/1.0/}"


def page_paragraphs(path):
    """Title and paragraphs of a Mallard help page, whitespace collapsed, info block dropped."""
    root = ET.parse(path).getroot()
    for info in root.iter(MALLARD + "info"):
        info.clear()
    out = []
    for el in root.iter():
        if el.tag in (MALLARD + "title", MALLARD + "p", MALLARD + "screen"):
            text = "".join(el.itertext())
            if el.tag != MALLARD + "screen":
                text = re.sub(r"\s+", " ", text).strip()
            if text:
                out.append(text)
    return out


def help_pages(root, lang, page_ids, budget):
    """Help text of one language as single-message requests, up to `budget` bytes in all.
    Paragraphs left untranslated (identical to the English original) are dropped; the rest
    are grouped (across pages) into requests of at least 150, 300, 600, 1200 and 2500 bytes
    in turn, so prompts of every size are there."""
    targets = [150, 300, 600, 1200, 2500]
    requests, used, chunk = [], 0, []
    for page_id in page_ids:
        english = set(page_paragraphs(os.path.join(root, "C", "gnome-help", page_id)))
        paras = page_paragraphs(os.path.join(root, lang, "gnome-help", page_id))
        if lang != "C":
            paras = [p for p in paras if p not in english]
        for para in paras:
            chunk.append(para)
            text = "\n\n".join(chunk)
            if len(text.encode()) >= targets[len(requests) % len(targets)]:
                requests.append([text])
                used += len(text.encode())
                chunk = []
                if used >= budget:
                    return requests
    return requests


def chat_requests(data_dir, lang, budget, min_messages=6):
    """Chatterbot conversations in file order, joined until a request has `min_messages`."""
    import yaml

    requests, current, used = [], [], 0
    folder = os.path.join(data_dir, lang)
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".yml") or name in ("botprofile.yml", "profile.yml"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for conversation in doc.get("conversations") or []:
            current.extend(str(m) for m in conversation if m is not None)
            if len(current) >= min_messages:
                requests.append(current)
                used += sum(len(m.encode()) for m in current)
                current = []
                if used >= budget:
                    return requests
    return requests


def arabic_messages(locale_dir, budget):
    """Arabic messages of the GTK/GLib catalogs (LGPL-2.1+), 20+ chars, 6 to a request."""
    texts = []
    for domain in ("gtk20-properties", "glib20", "gtk20", "gdk-pixbuf"):
        path = os.path.join(locale_dir, "ar", "LC_MESSAGES", domain + ".mo")
        with open(path, "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog
        for key in sorted(catalog, key=str):
            value = catalog[key]
            if key and isinstance(value, str) and len(value) >= 20 and re.search("[\u0600-\u06ff]", value):
                texts.append(value)
    requests, used = [], 0
    for i in range(0, len(texts), 6):
        group = texts[i : i + 6]
        requests.append(["\n".join(group)])
        used += len(requests[-1][0].encode())
        if used >= budget:
            break
    return requests


def code_chunks(paths, budget, target=1200):
    """Source files cut at blank lines into chunks of about `target` bytes."""
    requests, used = [], 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            blocks = re.split(r"\n\s*\n", f.read())
        chunk = ""
        for block in blocks:
            chunk = chunk + "\n\n" + block if chunk else block
            if len(chunk.encode()) >= target:
                requests.append([chunk])
                used += len(chunk.encode())
                chunk = ""
                if used >= budget:
                    return requests
        if chunk.strip():
            requests.append([chunk])
            used += len(chunk.encode())
            if used >= budget:
                return requests
    return requests


def json_chunks(sources, budget):
    """Runs of elements of real JSON documents, alternately pretty-printed (indent 2) and
    minified, as a user would paste them or a tool would return them."""
    requests, used, n = [], 0, 0
    per_source = budget // len(sources)
    for items, size in sources:
        used_here, i = 0, 0
        while i < len(items) and used_here < per_source:
            group = items[i : i + size]
            i += size
            if n % 2 == 0:
                text = json.dumps(group, indent=2, ensure_ascii=False)
            else:
                text = json.dumps(group, separators=(",", ":"), ensure_ascii=False)
            n += 1
            requests.append([text])
            used_here += len(text.encode())
        used += used_here
    return requests


def write(out_dir, name, requests):
    path = os.path.join(out_dir, name + ".jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for request in requests:
            f.write(json.dumps(request, ensure_ascii=False) + "\n")
    size = os.path.getsize(path)
    print(f"{name}: {len(requests)} requests, {size} bytes")


def main():
    home = os.path.expanduser("~")
    cargo = os.path.join(home, ".cargo/registry/src/index.crates.io-1949cf8c6b5b557f")
    pylib = os.path.join(home, ".pyenv/versions/3.11.7/lib/python3.11")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gnome-help", default="/tmp/corpus-src/gud/usr/share/help")
    ap.add_argument("--chatterbot", default="/tmp/corpus-src/cb/chatterbot_corpus/data")
    ap.add_argument("--locale", default="/usr/share/locale")
    ap.add_argument("--cargo-src", default=cargo)
    ap.add_argument("--python-lib", default=pylib)
    ap.add_argument("--node-modules", default="/usr/lib/node_modules/npm/node_modules")
    ap.add_argument("--site-packages", default=os.path.join(pylib, "site-packages"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # The help pages in one order for every language: every 7th page first, then the rest.
    all_pages = sorted(p for p in os.listdir(os.path.join(args.gnome_help, "C", "gnome-help")) if p.endswith(".page"))
    page_ids = [p for i in range(7) for p in all_pages[i::7]]
    for lang, name, budget in [
        ("C", "prose-en", 20_000),
        ("de", "prose-de", 8_000),
        ("fr", "prose-fr", 8_000),
        ("pl", "prose-pl", 8_000),
        ("vi", "prose-vi", 8_000),
        ("ja", "prose-ja", 14_000),
        ("zh_CN", "prose-zh", 12_000),
        ("ko", "prose-ko", 12_000),
        ("ru", "prose-ru", 12_000),
        ("uk", "prose-uk", 10_000),
        ("fa", "prose-fa", 10_000),
        ("ta", "prose-ta", 9_000),
        ("el", "prose-el", 9_000),
    ]:
        write(args.out, name, help_pages(args.gnome_help, lang, page_ids, budget))

    write(args.out, "messages-ar", arabic_messages(args.locale, 10_000))

    for lang, name, budget in [
        ("english", "chat-en", 8_000),
        ("chinese", "chat-zh", 6_000),
        ("japanese", "chat-ja", 6_000),
        ("russian", "chat-ru", 6_000),
        ("hindi", "chat-hi", 6_000),
    ]:
        write(args.out, name, chat_requests(args.chatterbot, lang, budget))

    rust = [
        os.path.join(args.cargo_src, "anyhow-1.0.105/src/error.rs"),
        os.path.join(args.cargo_src, "bytes-1.12.2/src/bytes.rs"),
        os.path.join(args.cargo_src, "serde_json-1.0.154/src/value/mod.rs"),
    ]
    write(args.out, "code-rust", code_chunks(rust, 20_000))
    python = [os.path.join(args.python_lib, f) for f in ("textwrap.py", "json/decoder.py", "shlex.py")]
    write(args.out, "code-python", code_chunks(python, 16_000))
    js = [os.path.join(args.node_modules, f) for f in ("semver/classes/range.js", "semver/classes/semver.js", "minimatch/dist/commonjs/ast.js")]
    write(args.out, "code-js", code_chunks(js, 12_000))

    with open(os.path.join(args.cargo_src, "url-2.5.8/tests/urltestdata.json"), encoding="utf-8") as f:
        url_tests = [x for x in json.load(f) if isinstance(x, dict)]
    with open(os.path.join(args.site_packages, "boto3/data/ec2/2016-11-15/resources-1.json"), encoding="utf-8") as f:
        ec2 = json.load(f)
    ec2_items = [{k: v} for k, v in sorted(ec2["resources"].items())]
    with open(os.path.join(args.site_packages, "cryptography-48.0.0.dist-info/sboms/cryptography-rust.cyclonedx.json"), encoding="utf-8") as f:
        sbom = json.load(f)
    write(args.out, "json", json_chunks([(url_tests, 2), (ec2_items, 1), (sbom["components"], 1)], 18_000))


if __name__ == "__main__":
    main()
