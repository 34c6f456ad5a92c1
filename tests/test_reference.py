"""Reference data: communes from the GSO list, geometry, the procedure catalogue, db upgrade."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from vietnam_provinces import Province, Ward

from control_center.db import make_engine, session_factory
from control_center.models import Commune, Procedure
from control_center.reference import (
    CATALOGUE_FILE,
    GEO_DIR,
    NATIONAL_COMMUNES_FILE,
    CatalogueError,
    db_upgrade,
    load_procedures,
    national_geojson,
    province_codes,
    province_communes,
    province_geojson,
)
from control_center.settings import load_settings

# --- communes -------------------------------------------------------------------------------


def test_tuyen_quang_has_its_124_communes_with_map_points() -> None:
    communes = province_communes("08")

    assert len(communes) == 124
    assert Counter(c.division_type for c in communes) == {"xã": 117, "phường": 7}
    thuong_lam = next(c for c in communes if c.code == "02269")
    assert thuong_lam.name == "Xã Thượng Lâm"
    assert thuong_lam.name_en == "Thuong Lam"
    # Every commune can be placed on the wall's map, inside Tuyên Quang.
    for commune in communes:
        assert commune.province_code == "08"
        assert commune.lon is not None and 104.2 < commune.lon < 105.9, commune
        assert commune.lat is not None and 21.4 < commune.lat < 23.5, commune
        assert commune.area_km2 and commune.area_km2 > 0


def test_codes_are_zero_padded_and_sorted() -> None:
    codes = [c.code for c in province_communes("8")]
    assert all(len(code) == 5 and code.isdigit() for code in codes)
    assert codes == sorted(codes)
    assert codes[0].startswith("00")


@pytest.mark.parametrize("province", ["01", "79", "46"])
def test_a_province_without_its_own_file_is_cut_from_the_national_map(province: str) -> None:
    communes = province_communes(province)

    assert len(communes) == sum(1 for _ in Ward.iter_by_province(int(province)))
    assert len(communes) > 0
    assert all(c.lon is not None and c.lat is not None for c in communes)
    geo = province_geojson(province)
    assert geo is not None
    assert sorted(f["properties"]["code"] for f in geo["features"]) == [c.code for c in communes]


def test_a_province_without_any_geometry_still_lists_its_communes(tmp_path: Path) -> None:
    communes = province_communes("01", tmp_path)

    assert len(communes) == 126
    assert all(c.lon is None and c.lat is None for c in communes)
    assert province_geojson("01", tmp_path) is None


def test_the_national_maps_match_the_reference_list() -> None:
    provinces = national_geojson()
    assert provinces is not None
    assert sorted(f["properties"]["code"] for f in provinces["features"]) == province_codes()
    with (GEO_DIR / NATIONAL_COMMUNES_FILE).open(encoding="utf-8") as fh:
        communes = json.load(fh)["features"]
    by_code = {f["properties"]["code"]: f["properties"]["provinceCode"] for f in communes}
    assert len(by_code) == len(communes) == 3321
    assert by_code == {f"{int(w.code):05d}": f"{int(w.province_code):02d}" for w in Ward.iter_all()}


def test_all_34_provinces_give_the_3321_communes_once_each() -> None:
    codes = [
        c.code
        for province in Province.iter_all()
        for c in province_communes(f"{int(province.code):02d}")
    ]
    assert len(codes) == len(set(codes)) == 3321
    divisions = Counter(
        c.division_type for p in Province.iter_all() for c in province_communes(str(int(p.code)))
    )
    assert divisions == {"xã": 2621, "phường": 687, "đặc khu": 13}


def test_unknown_province_is_refused_with_its_code_named() -> None:
    with pytest.raises(ValueError, match="'99'"):
        province_communes("99")


def test_province_geojson_has_one_feature_per_commune() -> None:
    geo = province_geojson("08")
    assert geo is not None
    codes = {f["properties"]["code"] for f in geo["features"]}
    assert codes == {c.code for c in province_communes("08")}
    assert province_geojson("08") is geo  # cached: the wall asks on every page build


# --- procedure catalogue --------------------------------------------------------------------


def test_shipped_catalogue_is_valid_and_covers_the_common_procedures() -> None:
    procedures = load_procedures(CATALOGUE_FILE)
    by_code = {p.code: p for p in procedures}

    assert len(procedures) >= 30
    assert len(by_code) == len(procedures)
    birth = by_code["1.001193"]
    assert birth.name == "Đăng ký khai sinh"
    assert birth.sector == "Hộ tịch"
    assert birth.full_online
    # Every shipped procedure has a legal clock, so no dossier of ours lacks a due date.
    assert all((p.processing_days is None) != (p.processing_hours is None) for p in procedures)
    sectors = {p.sector for p in procedures}
    assert {"Hộ tịch", "Chứng thực", "Đất đai", "Bảo trợ xã hội", "Hộ kinh doanh"} <= sectors
    # The simulator draws by weight: certified copies and births dominate a centre's day.
    busiest = sorted(procedures, key=lambda p: p.weight, reverse=True)[:2]
    assert {p.code for p in busiest} == {"2.000815", "1.001193"}


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "procedures.yaml"
    path.write_text(body, encoding="utf-8")
    return path


GOOD_ROW = """
  - code: "1.001193"
    name: Đăng ký khai sinh
    sector: Hộ tịch
    processing_hours: 4
"""


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        (
            '  - code: "1.000656"\n    sector: Hộ tịch\n    processing_days: 1\n',
            r"row 2 \(code 1\.000656\): name: Field required",
        ),
        (
            '  - code: "1.000656"\n    name: Khai tử\n    sector: Hộ tịch\n    processing_days: -2\n',
            r"row 2 \(code 1\.000656\): processing_days: .*greater than 0",
        ),
        (
            '  - code: "1.000656"\n    name: Khai tử\n    sector: Hộ tịch\n'
            "    processing_days: 1\n    processing_hours: 4\n",
            r"row 2 \(code 1\.000656\): .*not both",
        ),
        (
            "  - code: khai-tu\n    name: Khai tử\n    sector: Hộ tịch\n",
            r"row 2 \(code khai-tu\): code: String should match pattern",
        ),
        (
            '  - code: "1.000656"\n    name: Khai tử\n    sector: Hộ tịch\n    proccessing_days: 1\n',
            r"row 2 \(code 1\.000656\): proccessing_days: Extra inputs are not permitted",
        ),
        (GOOD_ROW, r"row 2 \(code 1\.001193\): duplicate code, already in row 1"),
        ("  - just a string\n", r"row 2: expected a mapping"),
    ],
)
def test_a_broken_catalogue_row_fails_naming_the_row(
    tmp_path: Path, bad_row: str, expected: str
) -> None:
    path = _write(tmp_path, "procedures:" + GOOD_ROW + bad_row)
    with pytest.raises(CatalogueError, match=expected) as info:
        load_procedures(path)
    assert str(path) in str(info.value)


def test_unreadable_or_malformed_catalogue_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot be read"):
        load_procedures(tmp_path / "missing.yaml")
    with pytest.raises(CatalogueError, match="not valid YAML"):
        load_procedures(_write(tmp_path, "procedures: [\n  - code: 1"))
    with pytest.raises(CatalogueError, match="'procedures:' list"):
        load_procedures(_write(tmp_path, "- code: x\n"))


def test_a_procedure_without_a_clock_is_allowed(tmp_path: Path) -> None:
    path = _write(
        tmp_path, 'procedures:\n  - code: "1.003622"\n    name: Lễ hội\n    sector: Văn hóa\n'
    )
    (procedure,) = load_procedures(path)
    assert procedure.processing_days is None and procedure.processing_hours is None
    assert procedure.weight == 1.0 and procedure.full_online is False


# --- db upgrade -----------------------------------------------------------------------------


def _counts(url: str) -> tuple[int, int, int]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            communes = session.scalar(select(func.count()).select_from(Commune))
            procedures = session.scalar(select(func.count()).select_from(Procedure))
            distinct = session.scalar(select(func.count(func.distinct(Commune.code))))
        return int(communes or 0), int(procedures or 0), int(distinct or 0)
    finally:
        engine.dispose()


def test_db_upgrade_twice_loads_the_province_once(db_url: str) -> None:
    settings = load_settings(database_url=db_url, province="08")
    catalogue_size = len(load_procedures(CATALOGUE_FILE))

    first = db_upgrade(settings)
    second = db_upgrade(settings)

    assert first == second
    assert first["communes"] == 124
    assert first["procedures"] == catalogue_size
    assert first["province"] == "08"
    assert first["revision"] is not None
    assert _counts(db_url) == (124, catalogue_size, 124)


def test_db_upgrade_restores_reference_rows_and_catalogues_unknown_codes(db_url: str) -> None:
    settings = load_settings(database_url=db_url, province="08")
    db_upgrade(settings)
    engine = make_engine(db_url)
    try:
        with session_factory(engine).begin() as session:
            session.get(Commune, "02269").name = "renamed by hand"  # type: ignore[union-attr]
            # What the collector writes for a code the catalogue did not have yet.
            session.get(Procedure, "1.001193").catalogued = False  # type: ignore[union-attr]
            session.get(Procedure, "1.001193").processing_hours = None  # type: ignore[union-attr]
            session.add(Procedure(code="9.999999", name="from a centre", catalogued=False))

        db_upgrade(settings)

        with session_factory(engine)() as session:
            assert session.get(Commune, "02269").name == "Xã Thượng Lâm"  # type: ignore[union-attr]
            birth = session.get(Procedure, "1.001193")
            assert birth is not None and birth.catalogued and birth.processing_hours == 4
            # A code only the centres know is kept, still marked uncatalogued.
            unknown = session.get(Procedure, "9.999999")
            assert unknown is not None and not unknown.catalogued
    finally:
        engine.dispose()


def test_db_upgrade_of_another_province(db_url: str) -> None:
    result = db_upgrade(load_settings(database_url=db_url, province="01"))

    expected = sum(1 for _ in Ward.iter_by_province(1))
    assert result["communes"] == expected == 126
    assert _counts(db_url)[0] == expected


def test_db_upgrade_in_national_mode_loads_every_province(db_url: str) -> None:
    settings = load_settings(database_url=db_url, scope="national")

    first = db_upgrade(settings)
    second = db_upgrade(settings)

    assert first["province"] == second["province"] == "all"
    assert first["communes"] == second["communes"] == 3321
    assert _counts(db_url)[0] == 3321


def test_db_upgrade_creates_the_sqlite_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'not' / 'yet' / 'there.db'}"
    result = db_upgrade(load_settings(database_url=url))
    assert result["communes"] == 124
    assert (tmp_path / "not" / "yet" / "there.db").exists()


def test_db_upgrade_with_a_broken_catalogue_touches_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "procedures.yaml").write_text("procedures:\n  - code: nope\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'cc.db'}"

    with pytest.raises(CatalogueError, match="row 1"):
        db_upgrade(load_settings(database_url=url, config_dir=config))
    assert not (tmp_path / "cc.db").exists()
