import pytest
from redisvl.query.filter import Tag

from redrec.exceptions import InvalidInput
from redrec.store.filters import (
    _tag_clause,
    compile_filter,
    escape_text_words,
    required_tag_values,
)
from redrec.store.schema import IndexSpec

SPEC = IndexSpec.from_dict({
    "index": {"name": "f", "prefix": "f"},
    "fields": [
        {"name": "genre", "type": "tag"},
        {"name": "price", "type": "numeric"},
        {"name": "title", "type": "text"},
        {"name": "store", "type": "geo"},
        {"name": "vec", "type": "vector", "attrs": {"dims": 2, "algorithm": "flat"}},
    ],
})


def render(value):
    expr = compile_filter(SPEC, value)
    return None if expr is None else str(expr)


def test_empty_filters_mean_no_filter():
    assert render(None) is None
    assert render({}) is None


def test_tag_equal_and_any_of():
    assert render({"genre": "jazz"}) == "@genre:{jazz}"
    assert render({"genre": ["jazz", "soul"]}) == "@genre:{jazz|soul}"
    assert render({"genre": {"ne": "jazz"}}) == "(-@genre:{jazz})"


def test_numeric_ranges():
    assert render({"price": 5}) == "@price:[5 5]"
    # one range per field, not the intersection of two (each range costs RediSearch a
    # union over its range tree)
    assert render({"price": {"gte": 10, "lt": 20}}) == "@price:[10 (20]"
    assert render({"price": {"gt": 1.5}}) == "@price:[(1.5 +inf]"
    assert render({"price": {"lte": 3}}) == "@price:[-inf 3]"
    # several bounds of one kind stay separate clauses
    assert render({"price": {"gte": 10, "gt": 12}}) == "(@price:[10 +inf] @price:[(12 +inf])"
    assert render({"price": {"ne": 4}}) == "(-@price:[4 4])"


def test_text_words_and_phrase():
    assert render({"title": "harry potter"}) == "@title:(harry potter)"
    assert render({"title": {"phrase": "the hobbit"}}) == '@title:("the hobbit")'


def test_geo_radius():
    assert render({"store": {"lon": 2.35, "lat": 48.85, "radius": 3}}) == "@store:[2.35 48.85 3 km]"


def test_boolean_combinators():
    out = render({"or": [{"genre": "a"}, {"and": [{"price": 1}, {"not": {"genre": "b"}}]}]})
    assert out == "(@genre:{a} | (@price:[1 1] (-(@genre:{b}))))"


def test_several_keys_are_anded():
    assert render({"genre": "a", "price": {"lte": 3}}) == "(@genre:{a} @price:[-inf 3])"


def test_chains_of_one_operator_are_written_flat():
    # RedisVL writes ((a b) c); RediSearch runs the flat intersection faster
    assert render({"genre": "a", "price": {"lte": 3}, "title": "x"}) == (
        "(@genre:{a} @price:[-inf 3] @title:(x))")
    assert render({"and": [{"genre": "a"}, {"and": [{"price": 1}, {"title": "x"}]}]}) == (
        "(@genre:{a} @price:[1 1] @title:(x))")
    assert render({"or": [{"genre": "a"}, {"or": [{"genre": "b"}, {"price": 2}]}]}) == (
        "(@genre:{a} | @genre:{b} | @price:[2 2])")
    # mixed operators keep their parentheses
    assert render({"genre": "a", "or": [{"price": 1}, {"title": "x"}]}) == (
        "(@genre:{a} (@price:[1 1] | @title:(x)))")
    assert render({"and": [{"genre": "a"}]}) == "@genre:{a}"


@pytest.mark.parametrize("evil", [
    "jazz} | @price:[0 inf]",
    "a\\",
    "x) @genre:{y",
    '"; FT.DROPINDEX f',
])
def test_tag_values_cannot_inject_syntax(evil):
    out = render({"genre": evil})
    assert out.startswith("@genre:{") and out.endswith("}")
    inner = out[len("@genre:{"):-1]
    # every special character is escaped, so the clause cannot be closed early
    for i, ch in enumerate(inner):
        if ch in "{}|@[]()\" ;:" and (i == 0 or inner[i - 1] != "\\"):
            pytest.fail(f"unescaped {ch!r} in {out!r}")


def test_text_words_cannot_inject_syntax():
    assert escape_text_words("hello) @genre:{x") == "hello\\) \\@genre\\:\\{x"
    assert render({"title": "a) | (@price:[0 1]"}).count("\\)") == 1


def test_filter_expression_objects_pass_through():
    assert render(Tag("genre") == "x") == "@genre:{x}"


@pytest.mark.parametrize("bad,match", [
    ({"nope": 1}, "no field 'nope'"),
    ({"vec": 1}, "cannot be filtered"),
    ({"price": "cheap"}, "not a number"),
    ({"price": {"between": [1, 2]}}, "unknown operator"),
    ({"price": float("nan")}, "not finite"),
    ({"genre": []}, "empty list"),
    ({"genre": {"x": 1}}, "use a value"),
    ({"title": ""}, "non-empty"),
    ({"store": {"lon": 1}}, "needs"),
    ({"store": {"lon": 500, "lat": 0, "radius": 1}}, "out of range"),
    ({"store": {"lon": 1, "lat": 0, "radius": 1, "unit": "parsec"}}, "unit"),
    ({"or": []}, "non-empty list"),
    ({"or": [1]}, "non-empty filter object"),
    ({"not": []}, "'not' takes"),
    ("genre=jazz", "JSON object"),
])
def test_malformed_filters_are_invalid_input(bad, match):
    with pytest.raises(InvalidInput, match=match):
        compile_filter(SPEC, bad)


def test_selectivity_is_estimated_from_clauses():
    from redrec.store.filters import estimate_selectivity

    shares = {"@genre:{a}": 0.2, "@genre:{b}": 0.3, "@price:[-inf 10]": 0.5}
    seen = []

    def share(clause):
        seen.append(clause)
        return shares[clause]

    assert estimate_selectivity(SPEC, None, share) == 1.0
    assert estimate_selectivity(SPEC, {"genre": ["a", "b"]}, share) == pytest.approx(0.5)
    both = {"genre": "a", "price": {"lte": 10}}
    assert estimate_selectivity(SPEC, both, share) == pytest.approx(0.1)
    assert estimate_selectivity(SPEC, {"not": {"genre": "a"}}, share) == pytest.approx(0.8)
    assert estimate_selectivity(SPEC, {"or": [{"genre": "a"}, {"genre": "b"}]},
                                share) == pytest.approx(0.5)
    assert set(seen) == set(shares)  # only leaf clauses are ever measured


def test_a_long_tag_list_is_estimated_from_the_number_of_distinct_values():
    from redrec.store.filters import estimate_selectivity

    def share(clause):
        raise AssertionError(f"measured {clause} one value at a time")

    ids = [f"i{n}" for n in range(100)]
    got = estimate_selectivity(SPEC, {"genre": ids}, share, lambda field: 20_000)
    assert got == pytest.approx(100 / 20_000)
    assert estimate_selectivity(SPEC, {"not": {"genre": ids}}, share,
                                lambda field: 200) == pytest.approx(0.5)


@pytest.mark.parametrize("value,expected", [
    (None, None),
    ({"price": {"lte": 3}}, None),
    ({"genre": "jazz"}, ["jazz"]),
    ({"genre": ["jazz", "folk"], "price": {"lte": 3}}, ["jazz", "folk"]),
    ({"genre": {"eq": ["jazz"]}}, ["jazz"]),
    ({"genre": {"ne": "jazz"}}, None),
    ({"and": [{"price": {"lte": 3}}, {"genre": ["jazz", "folk"]}]}, ["jazz", "folk"]),
    ({"and": [{"genre": ["jazz", "folk"]}], "genre": ["folk", "pop"]}, ["folk"]),
    ({"or": [{"genre": "jazz"}, {"genre": "folk"}]}, None),
    ({"not": {"genre": "jazz"}}, None),
])
def test_required_tag_values(value, expected):
    assert required_tag_values(value, "genre") == expected


@pytest.mark.parametrize("values", [["rock"], ["a", "b c", "x|y"], ["sci-fi", "c++", "日本", "a.b,c"],
                                    ["{brace}", "tab\tend", "50%", "$x", "'q'"]])
def test_tag_clauses_read_as_redisvl_writes_them(values):
    assert str(_tag_clause("genre", values)) == str(Tag("genre") == values)
    assert str(_tag_clause("genre", values, negate=True)) == str(Tag("genre") != values)
