"""Reference data: communes (GSO codes), commune geometry, the procedure catalogue, ``db upgrade``.

Communes come from the ``vietnam-provinces`` package (post-merger list, 34 provinces, 3,321
communes); their polygon, representative point and area come from
``config/geo/{province}_*.geojson`` when one is shipped for the province, else from the national
``config/geo/vn_communes.geojson`` (coarser). ``config/geo/vn_provinces.geojson`` holds the 34
provinces for the national wall. The procedure catalogue is ``config/procedures.yaml``.
Nothing here touches the database except :func:`seed_reference_data` and :func:`db_upgrade`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control_center.db import insert_for, make_engine, session_factory
from control_center.migrate import current_revision, upgrade_schema
from control_center.models import Commune, Procedure
from control_center.settings import CONFIG_DIR, Settings

log = logging.getLogger(__name__)

GEO_DIR = CONFIG_DIR / "geo"
NATIONAL_PROVINCES_FILE = "vn_provinces.geojson"
NATIONAL_COMMUNES_FILE = "vn_communes.geojson"
CATALOGUE_FILE = CONFIG_DIR / "procedures.yaml"


class CatalogueError(ValueError):
    """The procedure catalogue cannot be used; the message names the file and the row."""


# --- communes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommuneRef:
    code: str  # 5 digits, zero-padded (GSO)
    province_code: str  # 2 digits
    name: str  # official name with its division type, e.g. "Xã Thượng Lâm"
    division_type: str  # xã / phường / đặc khu
    name_en: str | None = None
    lon: float | None = None  # representative point inside the commune, not the centroid
    lat: float | None = None
    area_km2: float | None = None


def normalize_province_code(province_code: str | int) -> str:
    """'8', 8 or '08' -> '08'; ValueError naming the code when it is not one of the 34."""
    from vietnam_provinces import Province

    try:
        number = int(str(province_code).strip())
        Province.from_code(number)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"{province_code!r} is not one of the 34 province codes") from None
    return f"{number:02d}"


def province_codes() -> list[str]:
    """The 34 provinces' 2-digit GSO codes, in code order."""
    from vietnam_provinces import Province

    return sorted(f"{int(p.code):02d}" for p in Province.iter_all())


@lru_cache(maxsize=8)
def _read_geojson(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@lru_cache(maxsize=64)
def _load_geojson(geo_dir: Path, province_code: str) -> dict[str, Any] | None:
    matches = sorted(geo_dir.glob(f"{province_code}_*.geojson"))
    if matches:
        return _read_geojson(matches[0])
    # The province's slice of the national map: what a browser receives is one province.
    national = _read_geojson(geo_dir / NATIONAL_COMMUNES_FILE)
    if national is None:
        return None
    features = [
        f for f in national["features"] if f["properties"].get("provinceCode") == province_code
    ]
    return {"type": "FeatureCollection", "features": features} if features else None


def province_geojson(province_code: str, geo_dir: Path | None = None) -> dict[str, Any] | None:
    """The province's commune polygons (a FeatureCollection keyed by ``properties.code``).

    The province's own file when one is shipped, else its communes cut from the national
    map; None when neither exists. The result is cached and shared between callers: treat it
    as read-only.
    """
    return _load_geojson(geo_dir or GEO_DIR, normalize_province_code(province_code))


def national_geojson(geo_dir: Path | None = None) -> dict[str, Any] | None:
    """The 34 provinces' polygons (``properties.code`` = 2-digit province code); cached."""
    return _read_geojson((geo_dir or GEO_DIR) / NATIONAL_PROVINCES_FILE)


def province_communes(province_code: str, geo_dir: Path | None = None) -> list[CommuneRef]:
    """All communes of a province, sorted by code, with geometry facts where shipped."""
    from vietnam_provinces import Ward

    code = normalize_province_code(province_code)
    geo = province_geojson(code, geo_dir)
    facts: dict[str, dict[str, Any]] = {}
    if geo is not None:
        facts = {f["properties"]["code"]: f["properties"] for f in geo.get("features", [])}
    communes = []
    for ward in Ward.iter_by_province(int(code)):  # type: ignore[arg-type]
        ward_code = f"{int(ward.code):05d}"
        props = facts.get(ward_code, {})
        communes.append(
            CommuneRef(
                code=ward_code,
                province_code=code,
                name=ward.name,
                division_type=ward.division_type.value,
                name_en=props.get("nameEn"),
                lon=props.get("lon"),
                lat=props.get("lat"),
                area_km2=props.get("areaKm2"),
            )
        )
    return sorted(communes, key=lambda c: c.code)


# --- procedure catalogue --------------------------------------------------------------------


class ProcedureRef(BaseModel):
    """One row of ``config/procedures.yaml`` (field meanings: see the file's header)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    # MaTTHC as the national database writes it (1.001193); local variants may add a suffix.
    code: str = Field(min_length=1, max_length=64, pattern=r"^\d\.\d{6}(\.[A-Za-z0-9]+)?$")
    name: str = Field(min_length=1, max_length=500)
    sector: str = Field(min_length=1, max_length=120)
    processing_days: float | None = Field(default=None, gt=0)
    processing_hours: float | None = Field(default=None, gt=0)
    full_online: bool = False
    weight: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _one_clock(self) -> ProcedureRef:
        # Both would leave the due date ambiguous; neither is allowed (kept without due date).
        if self.processing_days is not None and self.processing_hours is not None:
            raise ValueError("give processing_days or processing_hours, not both")
        return self


def load_procedures(path: Path | str = CATALOGUE_FILE) -> list[ProcedureRef]:
    """Read and validate the catalogue; :class:`CatalogueError` names the row that is wrong."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path}: not valid YAML: {exc}") from exc
    rows = data.get("procedures") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise CatalogueError(f"{path}: expected a top-level 'procedures:' list")

    procedures: list[ProcedureRef] = []
    first_row_of: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        where = f"{path}: procedure row {number}"
        if isinstance(row, dict) and row.get("code"):
            where += f" (code {row['code']})"
        if not isinstance(row, dict):
            raise CatalogueError(f"{where}: expected a mapping of fields, got {row!r}")
        try:
            procedure = ProcedureRef.model_validate(row)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'row'}: "
                f"{err['msg'].removeprefix('Value error, ')}"
                for err in exc.errors()
            )
            raise CatalogueError(f"{where}: {problems}") from None
        if procedure.code in first_row_of:
            raise CatalogueError(
                f"{where}: duplicate code, already in row {first_row_of[procedure.code]}"
            )
        first_row_of[procedure.code] = number
        procedures.append(procedure)
    return procedures


# --- seeding and db upgrade -----------------------------------------------------------------


def _upsert(session: Session, table: Any, rows: list[dict[str, Any]], key: str) -> None:
    if not rows:
        return
    ins = insert_for(session, table)
    stmt = ins.on_conflict_do_update(
        index_elements=[key],
        set_={name: ins.excluded[name] for name in rows[0] if name != key},
    )
    session.execute(stmt, rows)


def seed_reference_data(
    session: Session,
    province_code: str | None,
    catalogue_path: Path | str = CATALOGUE_FILE,
    geo_dir: Path | None = None,
) -> dict[str, int]:
    """Insert or update the province's communes (``None``: all 34 provinces' communes) and the
    catalogue's procedures (idempotent).

    A catalogue entry always wins over a row the collector created for a code it did not
    know (``catalogued`` becomes True). Rows missing from the reference data are kept:
    events already stored may name them. Returns the number of rows written per table;
    the caller commits.
    """
    procedures = load_procedures(catalogue_path)  # validate before touching the database
    provinces = province_codes() if province_code is None else [province_code]
    communes = [c for code in provinces for c in province_communes(code, geo_dir)]
    _upsert(
        session,
        Commune.__table__,
        [
            {
                "code": c.code,
                "province_code": c.province_code,
                "name": c.name,
                "name_en": c.name_en,
                "division_type": c.division_type,
                "lon": c.lon,
                "lat": c.lat,
                "area_km2": c.area_km2,
            }
            for c in communes
        ],
        key="code",
    )
    _upsert(
        session,
        Procedure.__table__,
        [
            {
                "code": p.code,
                "name": p.name,
                "sector": p.sector,
                "processing_days": p.processing_days,
                "processing_hours": p.processing_hours,
                "full_online": p.full_online,
                "catalogued": True,
            }
            for p in procedures
        ],
        key="code",
    )
    return {"communes": len(communes), "procedures": len(procedures)}


def db_upgrade(settings: Settings) -> dict[str, Any]:
    """Apply migrations, then load the configured province's reference data (every province's
    with ``CC_SCOPE=national``).

    Idempotent and safe on every release. Returns what the database holds afterwards:
    ``revision``, ``province`` (``"all"`` in national mode), ``communes`` (of that scope),
    ``procedures`` (catalogued).
    """
    province = None if settings.national else normalize_province_code(settings.province)
    catalogue = settings.config_dir / "procedures.yaml"
    geo_dir = settings.config_dir / "geo"
    load_procedures(catalogue)  # a broken catalogue fails before the schema is touched
    engine = make_engine(settings.database_url)
    try:
        upgrade_schema(engine)
        with session_factory(engine)() as session, session.begin():
            written = seed_reference_data(session, province, catalogue, geo_dir)
        with session_factory(engine)() as session:
            in_scope = select(func.count()).select_from(Commune)
            if province is not None:
                in_scope = in_scope.where(Commune.province_code == province)
            communes = session.scalar(in_scope)
            procedures = session.scalar(
                select(func.count()).select_from(Procedure).where(Procedure.catalogued)
            )
        result = {
            "revision": current_revision(engine),
            "province": province or "all",
            "communes": int(communes or 0),
            "procedures": int(procedures or 0),
        }
    finally:
        engine.dispose()
    log.info("db upgrade done: %s (wrote %s)", result, written)
    return result
