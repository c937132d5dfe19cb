"""API parity of the twins at runtime (STYLE 2.7): public names, parameters, kinds, defaults.

Marked ``compiled``: it needs the compiled twin. Annotations are not compared (a ``.pyx``
spells them differently); ``tests/typing_parity.py`` checks types and stubtest the ``.pyi``.
"""

from __future__ import annotations

import importlib
import inspect
from types import GetSetDescriptorType, ModuleType

import pytest

from tests.impls import COMPILED, PURE

pytestmark = pytest.mark.compiled


def public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def shape(func: object) -> list[tuple[str, object, object]]:
    sig = inspect.signature(func)  # type: ignore[arg-type]  # any callable
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


@pytest.fixture(scope="module")
def modules() -> tuple[ModuleType, ModuleType]:
    return importlib.import_module(PURE.reader_module), importlib.import_module(
        COMPILED.reader_module
    )


def test_reader_modules_export_the_same_names(modules: tuple[ModuleType, ModuleType]) -> None:
    pure, compiled = modules
    assert pure.__all__ == compiled.__all__ == ["DataReader"]


def test_reader_classes_have_the_same_public_names(modules: tuple[ModuleType, ModuleType]) -> None:
    pure, compiled = modules
    assert public(pure.DataReader) == public(compiled.DataReader)
    assert public(pure.DataReader) == {"done", "drain", "feed", "finish", "result", "size"}


@pytest.mark.parametrize("method", ["feed", "drain", "result"])
def test_reader_methods_have_the_same_parameters(
    modules: tuple[ModuleType, ModuleType], method: str
) -> None:
    pure, compiled = modules
    assert shape(getattr(pure.DataReader, method)) == shape(getattr(compiled.DataReader, method))


def is_property(attr: object) -> bool:
    # A Python property, or what Cython makes of one in a cdef class (a getset descriptor).
    # A plain method or a slot also has __get__: it must not count.
    return isinstance(attr, property | GetSetDescriptorType)


@pytest.mark.parametrize("prop", ["done", "size"])
def test_reader_properties_are_read_only(modules: tuple[ModuleType, ModuleType], prop: str) -> None:
    pure, compiled = modules
    assert isinstance(inspect.getattr_static(pure.DataReader, prop), property)
    assert isinstance(inspect.getattr_static(compiled.DataReader, prop), GetSetDescriptorType)
    for module in modules:
        reader = module.DataReader(10)
        assert is_property(inspect.getattr_static(module.DataReader, prop))
        with pytest.raises(AttributeError):
            setattr(reader, prop, 1)


def test_property_check_can_fail() -> None:
    # The check above once accepted anything with __get__, i.e. any method: prove it cannot.
    class Fake:
        __slots__ = ("slot",)

        def done(self) -> bool:
            return True

    assert not is_property(inspect.getattr_static(Fake, "done"))
    assert not is_property(inspect.getattr_static(Fake, "slot"))
    assert hasattr(inspect.getattr_static(Fake, "done"), "__get__")


def test_reader_init_parameters(modules: tuple[ModuleType, ModuleType]) -> None:
    # The cdef __init__ has no signature object; compare what the pure one promises with what
    # the compiled one accepts, by calling both the same ways.
    pure, _ = modules
    assert shape(pure.DataReader.__init__) == [
        ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("limit", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("normalize", inspect.Parameter.POSITIONAL_OR_KEYWORD, False),
        ("allow_nul", inspect.Parameter.POSITIONAL_OR_KEYWORD, False),
        ("bdat", inspect.Parameter.POSITIONAL_OR_KEYWORD, False),
    ]
    for module in modules:
        for reader in (
            module.DataReader(7),
            module.DataReader(7, True),
            module.DataReader(limit=7, normalize=True),
            module.DataReader(7, False, True),
            module.DataReader(limit=7, normalize=True, allow_nul=True),
        ):
            assert reader.feed(b"..\r\n.\r\n") == 7
            assert reader.result() == b".\r\n"
        with pytest.raises(TypeError):
            module.DataReader()
        with pytest.raises(TypeError):
            module.DataReader(7, False, True, False, 1)
        for reader in (module.DataReader(7, False, False, True), module.DataReader(7, bdat=True)):
            assert reader.feed(b"..\r\n.\r\n") == 7
            reader.finish()
            assert reader.result() == b"..\r\n.\r\n"


def test_header_parsers_have_the_same_parameters() -> None:
    # parse_header_block(data, /): the header twins' one entry point (smtpx._abc).
    pure = importlib.import_module(PURE.headers_module)
    compiled = importlib.import_module(COMPILED.headers_module)
    assert pure.__all__ == compiled.__all__
    assert [p[0:2] for p in shape(pure.parse_header_block)] == [
        p[0:2] for p in shape(compiled.parse_header_block)
    ]
