"""Training text for the real tier: translation catalogs (gettext .mo in wheels or folders) and documented functions."""

from __future__ import annotations

import struct
import zipfile

import pytest

from tasks.real_corpora import python_function_examples, translation_texts

HEADER = "Content-Type: text/plain; charset=UTF-8\n"


def mo_bytes(entries: dict[str, str]) -> bytes:
    """A GNU gettext .mo file (the format `msgfmt` writes) holding `entries` and a UTF-8 header."""
    items = sorted({"": HEADER, **entries}.items())
    keys, values = [key.encode() for key, _ in items], [value.encode() for _, value in items]
    count, start = len(items), 7 * 4
    data_start = start + 16 * count
    originals, translations, blob = [], [], b""
    for table, strings in ((originals, keys), (translations, values)):
        for text in strings:
            table.append((len(text), data_start + len(blob)))
            blob += text + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, count, start, start + 8 * count, 0, 0)
    tables = b"".join(struct.pack("<2I", *pair) for pair in originals + translations)
    return header + tables + blob


def test_catalogs_in_wheels_and_folders_give_sorted_distinct_text_per_language(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/locale/ru/LC_MESSAGES/django.mo", mo_bytes({"Save": "Сохранить изменения", "%(n)s files": "%(n)s файлов выбрано"}))
        archive.writestr("pkg/locale/zh_Hans/LC_MESSAGES/django.mo", mo_bytes({"Open the file": "打开这个文件夹里的文件"}))
    folder = tmp_path / "other" / "locale" / "ru_RU" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "app.mo").write_bytes(mo_bytes({"Save": "Сохранить изменения", "Ok": "Да"}))
    assert translation_texts([wheel, tmp_path / "other"], "ru") == ["Сохранить изменения", "файлов выбрано"]
    assert translation_texts([wheel], "zh") == ["打开这个文件夹里的文件"]
    with pytest.raises(ValueError, match="no es translation catalogs"):
        translation_texts([wheel], "es")
    with pytest.raises(ValueError, match="not a wheel, zip archive or folder"):
        translation_texts([tmp_path / "other" / "locale" / "ru_RU" / "LC_MESSAGES" / "app.mo"], "ru")


def test_documented_functions_become_signature_docstring_prompts_and_body_targets(tmp_path):
    (tmp_path / "shapes.py").write_text(
        'def area(width, height):\n    """Return the area of a rectangle from its width and its height."""\n'
        "    return width * height\n\n\n"
        'def _hidden(x):\n    """A private helper, which is never used as an example at all."""\n    return x\n\n\n'
        "def undocumented(x):\n    return x\n"
    )
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "test_shapes.py").write_text('def test_area():\n    """Tests are skipped, whatever they say."""\n    assert True\n')
    (example,) = python_function_examples(tmp_path)
    assert example.id == "stdlib-shapes.area"
    assert example.prompt == 'def area(width, height):\n    """Return the area of a rectangle from its width and its height."""\n\n'
    assert example.target == "    return width * height\n"
    exec(example.prompt + example.target + "assert area(3, 4) == 12\n", {})
