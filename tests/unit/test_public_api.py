import redrec


def test_public_api_is_pinned():
    assert redrec.__all__ == sorted(redrec.__all__)
    for name in redrec.__all__:
        assert hasattr(redrec, name), name


def test_import_is_light():
    import subprocess
    import sys

    code = "import redrec, sys; print('torch' in sys.modules, 'dlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_exception_tree():
    assert issubclass(redrec.InvalidInput, redrec.RedrecError)
    assert issubclass(redrec.InvalidInput, ValueError)
    for cls in (redrec.ConfigError, redrec.SchemaError, redrec.NotFoundError,
                redrec.StoreUnavailable):
        assert issubclass(cls, redrec.RedrecError)
