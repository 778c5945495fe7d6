"""Training text for the real tier's adapter zoo, from permissively licensed sources that package registries serve.

- General text in zh/ru/es: the human translations in gettext catalogs (`locale/<code>/LC_MESSAGES/*.mo`) shipped in
  wheels (Django, BSD-3-Clause; Sphinx, BSD-2-Clause; the JupyterLab language packs, BSD-3-Clause): sentences and
  phrases written by translators, with no arithmetic answers and no code. The Debian fortune and manual-page packages
  named in the data README are GPL, so they are not used.
- English instruction-to-code pairs: top-level functions of the Python standard library (PSF License 2.0) whose
  docstring states what they do, turned into HumanEval's shape (signature and docstring as the prompt, the body as
  the target). English HumanEval is excluded (all of it is test data) and no standard-library function is a HumanEval
  problem.
"""

from __future__ import annotations

import ast
import gettext
import io
import re
import zipfile
from pathlib import Path

from tasks.examples import Example

CATALOG_LANGUAGES = {"zh": ("zh_CN", "zh_Hans", "zh-Hans"), "ru": ("ru", "ru_RU"), "es": ("es", "es_ES")}
PLACEHOLDER = re.compile(r"%\(?\w*\)?[sdifr]|\{[^}]*\}|<[^>]+>|&\w+;")
SKIPPED_LIBRARY_PARTS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "__pycache__"}


def catalog_language(path: str) -> str | None:
    """The language (zh/ru/es) of a `.../locale/<code>/LC_MESSAGES/<name>.mo` path, or None."""
    parts = path.replace("\\", "/").split("/")
    if not path.endswith(".mo") or "LC_MESSAGES" not in parts:
        return None
    code = parts[parts.index("LC_MESSAGES") - 1]
    return next((language for language, codes in CATALOG_LANGUAGES.items() if code in codes), None)


def catalog_strings(data: bytes) -> list[str]:
    """Every translated string of one `.mo` file (plural forms included), placeholders and markup removed."""
    catalog = gettext.GNUTranslations(io.BytesIO(data))._catalog
    texts = []
    for key, value in catalog.items():
        if key == "" or not isinstance(value, str):  # the header entry
            continue
        text = " ".join(PLACEHOLDER.sub(" ", value).split())
        if sum(character.isalpha() for character in text) >= 8:
            texts.append(text)
    return texts


def catalog_files(source: Path) -> list[tuple[str, bytes]]:
    """(path, bytes) of every `.mo` file in a wheel/zip archive or below a folder."""
    if source.is_dir():
        return [(str(path), path.read_bytes()) for path in sorted(source.rglob("*.mo"))]
    try:
        with zipfile.ZipFile(source) as archive:
            return [(name, archive.read(name)) for name in sorted(archive.namelist()) if name.endswith(".mo")]
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{source}: not a wheel, zip archive or folder ({error})") from None


def translation_texts(sources: list[Path], language: str) -> list[str]:
    """The distinct translated strings in `language` of every catalog in `sources`, sorted (deterministic)."""
    if language not in CATALOG_LANGUAGES:
        raise ValueError(f"language '{language}': no catalogs known; valid: {', '.join(CATALOG_LANGUAGES)}")
    texts = set()
    for source in sources:
        for path, data in catalog_files(Path(source)):
            if catalog_language(path) == language:
                texts.update(catalog_strings(data))
    if not texts:
        names = ", ".join(str(source) for source in sources)
        raise ValueError(f"no {language} translation catalogs (locale/<code>/LC_MESSAGES/*.mo) found in {names}")
    return sorted(texts)


def function_example(source: str, function: ast.FunctionDef, module: str, max_body_lines: int) -> Example | None:
    """HumanEval's shape for one documented function: prompt = signature + docstring, target = the body."""
    docstring = ast.get_docstring(function)
    body = function.body[1:]
    if not docstring or not body or function.name.startswith("_") or function.decorator_list:
        return None
    lines = source.splitlines(keepends=True)
    signature = "".join(lines[function.lineno - 1 : function.body[0].lineno - 1])
    if not signature.lstrip().startswith("def ") or len(docstring) < 40:
        return None
    first, last = body[0].lineno, function.end_lineno
    if last - first + 1 > max_body_lines:
        return None
    documented = "".join(lines[function.lineno - 1 : function.body[0].end_lineno])
    return Example(id=f"stdlib-{module}.{function.name}", prompt=documented + "\n", target="".join(lines[first - 1 : last]))


def python_function_examples(library: Path, max_body_lines: int = 15) -> list[Example]:
    """Documented top-level functions of the Python library at `library` (e.g. `sysconfig.get_paths()["stdlib"]`)."""
    examples = []
    for path in sorted(Path(library).rglob("*.py")):
        relative = path.relative_to(library)
        if SKIPPED_LIBRARY_PARTS & set(relative.parts):
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = ".".join(relative.with_suffix("").parts)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                example = function_example(source, node, module, max_body_lines)
                if example is not None:
                    examples.append(example)
    if not examples:
        raise ValueError(f"{library}: no documented Python functions found (expected the standard library folder)")
    return examples
