"""RecBole ``.user`` rows to the attributes ``Engine.set_user`` accepts."""

from __future__ import annotations

import pytest

from redrec.evaluate.served import engine_attributes


def test_movielens_row():
    row = {"age": "24", "gender": "M", "occupation": "technician", "zip_code": "85711"}
    assert engine_attributes(row) == {"age": "24", "gender": "M", "occupation": "technician",
                                      "zip": "85711"}


@pytest.mark.parametrize("row,expected", [
    ({"age": "24.0"}, {"age": "24"}),
    ({"age": "24.5"}, {"age": "24.5"}),
    ({"age": "25-34"}, {}),  # not a number: the NUMERIC index field could not hold it
    ({"age": "-1"}, {}),
    ({"age": "nan"}, {}),
    ({"gender": "", "occupation": "  "}, {}),
    ({"loc": "2.35,48.85"}, {"loc": "2.35,48.85"}),
    ({"loc": "2.35 48.85"}, {"loc": "2.35,48.85"}),
    ({"loc": "200,10"}, {}),
    ({"loc": "paris"}, {}),
    ({"shoe": "42", "user_name": "x"}, {}),  # unknown columns are ignored
])
def test_values_the_profile_index_could_not_hold_are_left_out(row, expected):
    assert engine_attributes(row) == expected
