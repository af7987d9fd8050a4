"""corral's tests, laid out like the package (``tests/engine`` tests ``corral.engine``, and so on).

A package so that test modules in different folders may share a name, and so that the helpers in
``tests._support`` are imported like any module (``from tests._support import Person``)."""
