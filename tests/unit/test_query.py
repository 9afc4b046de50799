from redrec.store.query import DISTANCE, knn_args, range_args


def test_knn_without_filter_is_a_pure_knn():
    args = knn_args("vec", b"\x00" * 8, 5)
    assert args.query == f"*=>[KNN $K @vec $vec AS {DISTANCE}]"
    assert args.params == {"vec": b"\x00" * 8, "K": 5}


def test_knn_with_filter_and_ef_runtime():
    args = knn_args("v", b"x", 10, filter_str="@genre:{jazz}", ef_runtime=128)
    assert args.query == f"(@genre:{{jazz}})=>[KNN $K @v $vec EF_RUNTIME $EF AS {DISTANCE}]"
    assert args.params["EF"] == 128


def test_command_layout_sorts_by_distance_and_pages():
    cmd = knn_args("v", b"x", 7, return_fields=["title"], offset=0, num=7).command("idx")
    assert cmd[:3] == ["FT.SEARCH", "idx", cmd[2]]
    i = cmd.index("RETURN")
    assert cmd[i + 1: i + 4] == [2, "title", DISTANCE]
    j = cmd.index("SORTBY")
    assert cmd[j + 1: j + 3] == [DISTANCE, "ASC"]
    k = cmd.index("LIMIT")
    assert cmd[k + 1: k + 3] == [0, 7]
    assert cmd[-2:] == ["DIALECT", 2]


def test_range_query_yields_distance_and_combines_filter():
    args = range_args("emb", b"x", 0.3, filter_str="@year:[2000 +inf]")
    assert args.query == (
        f"@emb:[VECTOR_RANGE $radius $vec]=>{{$YIELD_DISTANCE_AS: {DISTANCE}}} (@year:[2000 +inf])"
    )
    assert args.params["radius"] == 0.3


def test_range_epsilon_is_a_parameter():
    args = range_args("emb", b"x", 0.3, epsilon=0.05)
    assert "$EPSILON: $eps" in args.query
    assert args.params["eps"] == 0.05
