"""The overdue review's plain functions: URL <-> filters, the grid's requests and rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from control_center.queries import ReviewFilters, review_filters_from_params
from layouts import review

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def test_the_address_carries_the_filters_and_the_language() -> None:
    search = review.search_for(
        {
            "state": "overdue",
            "commune": "02269",
            "apology": "no",
            "officer": " Tuấn ",
            "level": None,
        },
        "en",
    )
    assert search == "?state=overdue&commune=02269&apology=no&officer=Tu%E1%BA%A5n&lang=en"
    filters, problem = review.filters_from_search(search)
    assert problem is None
    assert filters == ReviewFilters(state="overdue", commune="02269", apology=False, officer="Tuấn")


def test_default_filters_make_a_clean_address() -> None:
    assert review.search_for({"state": "attention", "sector": ""}, "vi") == ""
    assert review.filters_from_search("")[0] == ReviewFilters()


def test_a_hand_edited_bad_link_still_opens_the_page_and_says_why() -> None:
    filters, problem = review.filters_from_search("?commune=12&lang=en")
    assert filters == ReviewFilters()
    assert problem is not None and "commune" in problem


def test_filters_round_trip_through_query_parameters() -> None:
    filters = ReviewFilters(
        state="open",
        sector="Hộ tịch",
        channel="post",
        extended=True,
        escalation_level=0,
        sort=(("escalation_level", "desc"), ("due_at", "asc")),
    )
    assert review_filters_from_params(filters.to_params()) == filters


def test_the_grids_sort_model_becomes_the_querys_sort() -> None:
    model = [
        {"colId": "working_days_overdue", "sort": "desc"},
        {"colId": "applicant_name", "sort": "asc"},  # not a column: ignored
        {"colId": "officer", "sort": None},
    ]
    assert review.sort_from_model(model) == (("working_days_overdue", "desc"),)
    filters = review.with_sort(ReviewFilters(commune="02269"), {"sortModel": model})
    assert filters.commune == "02269" and filters.sort == (("working_days_overdue", "desc"),)
    assert review.with_sort(ReviewFilters(), None) == ReviewFilters()


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"startRow": 0, "endRow": 100}, (0, 100)),
        ({"startRow": 300, "endRow": 400}, (300, 100)),
        ({"startRow": 0, "endRow": 10_000}, (0, 500)),
        ({"startRow": -5, "endRow": 0}, (0, 1)),
        ({}, (0, 100)),
    ],
)
def test_block_bounds(request_: dict[str, int], expected: tuple[int, int]) -> None:
    assert review.block_bounds(request_) == expected


def test_grid_row_in_vietnamese_and_english() -> None:
    item = {
        "dossier_code": "000.00.22.H56-261110-0001",
        "commune_code": "02269",
        "commune_name": "Xã Thượng Lâm",
        "sector": "Hộ tịch",
        "procedure_code": "1.001193",
        "procedure_name": "Đăng ký khai sinh",
        "channel": "counter",
        "due_at": datetime(2026, 11, 17, 10, 0, tzinfo=UTC),
        "working_days_overdue": 6.375,
        "apology_issued": False,
        "extended": True,
        "escalation_level": 2,
        "officer": None,
    }
    vi = review.grid_row(item, "vi", NOW)
    assert vi["channel"] == "Trực tiếp"
    assert vi["due_at"] == "17/11/2026 17:00"  # local time
    assert vi["working_days_overdue"] == "6,4"
    assert (vi["apology_issued"], vi["extended"]) == ("Không", "Có")
    assert vi["escalation_level"] == "2" and vi["level"] == 2 and vi["late"] is True
    assert vi["officer"] == "—"
    en = review.grid_row({**item, "working_days_overdue": 0, "escalation_level": 0}, "en", NOW)
    assert en["channel"] == "At the desk"
    assert en["working_days_overdue"] == "0" and en["late"] is False
    assert en["escalation_level"] == "—"
