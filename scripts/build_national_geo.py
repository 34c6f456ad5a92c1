"""Build ``config/geo/vn_communes.geojson`` from the shared national commune map (run offline).

    .venv/bin/python scripts/build_national_geo.py ../shared/data/vn_communes.geojson

The shared file (thanglequoc/vietnamese-provinces-database, simplified with shapely at 0.004
degrees, 2.8 MB) keys 115 of its 3,321 communes by codes that the General Statistics Office
list shipped in ``vietnam-provinces`` has since changed (mostly renumbered wards, a few codes
moved to a neighbouring ward). The wall joins figures to polygons by code, so those communes
would be drawn without data. This script re-keys every feature to the GSO code of the commune
with the same official name, choosing the nearest code where a name repeats in other provinces
(codes are allocated in blocks by province), adds ``provinceCode``, checks that the result is
one polygon per commune of the reference list, and writes it. Geometry is left as it is: the
browser only ever receives one province's slice (~85 KB), never the whole file.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "config" / "geo" / "vn_communes.geojson"

# Old and new Vietnamese tone-mark placement ("hoà" / "hòa") both occur in official names.
_TONE_PLACEMENT = (
    ("oà", "òa"),
    ("oá", "óa"),
    ("oả", "ỏa"),
    ("oã", "õa"),
    ("oạ", "ọa"),
    ("uỳ", "ùy"),
    ("uý", "úy"),
    ("uỷ", "ủy"),
    ("uỹ", "ũy"),
    ("uỵ", "ụy"),
)


def normalize_name(name: str) -> str:
    text = unicodedata.normalize("NFC", name).lower().replace("–", "-")
    for old, new in _TONE_PLACEMENT:
        text = text.replace(old, new)
    return " ".join(text.split())


def base_name(official: str) -> str:
    """ "Xã Tân Phú" -> "tân phú": the name without its division type."""
    name = normalize_name(official)
    for kind in ("xã ", "phường ", "đặc khu "):
        name = name.removeprefix(kind)
    return name


def reference_wards() -> dict[str, tuple[str, str]]:
    """GSO commune code -> (official name, province code)."""
    from vietnam_provinces import Ward

    return {f"{int(w.code):05d}": (w.name, f"{int(w.province_code):02d}") for w in Ward.iter_all()}


def rekey(features: list[dict[str, Any]], wards: dict[str, tuple[str, str]]) -> list[str]:
    """Give every feature its GSO code and province in place; return what was changed."""
    by_name: dict[str, list[str]] = {}
    for code, (name, _) in wards.items():
        by_name.setdefault(normalize_name(name), []).append(code)
    changes = []
    for feature in features:
        props = feature["properties"]
        old = props["code"]
        candidates = by_name.get(normalize_name(props["fullName"]), [])
        if old in wards and (
            old in candidates or base_name(wards[old][0]) == normalize_name(props["name"])
        ):
            new = old  # same commune; its division type may have changed (xã -> phường)
        elif candidates:
            new = min(candidates, key=lambda c: abs(int(c) - int(old)))
        elif old in wards:
            new = old  # a spelling of the name differs ("Ea H'Leo")
        else:
            raise SystemExit(f"no commune named {props['fullName']!r} (code {old}) in the GSO list")
        if new != old:
            changes.append(f"{old} -> {new} {props['fullName']}")
        props["code"] = new
        props["provinceCode"] = wards[new][1]
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="shared/data/vn_communes.geojson")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    data = json.loads(args.source.read_text(encoding="utf-8"))
    wards = reference_wards()
    changes = rekey(data["features"], wards)
    codes = [f["properties"]["code"] for f in data["features"]]
    if len(set(codes)) != len(codes) or set(codes) != set(wards):
        missing, extra = sorted(set(wards) - set(codes)), sorted(set(codes) - set(wards))
        raise SystemExit(f"not one polygon per commune: missing {missing[:10]}, extra {extra[:10]}")
    data["features"].sort(key=lambda f: f["properties"]["code"])
    args.out.write_text(
        json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
    )
    print(f"{len(codes)} communes, {len(changes)} re-keyed to their GSO code:", file=sys.stderr)
    for line in changes:
        print(f"  {line}", file=sys.stderr)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
