"""Content per language: a template folder's locale variants, and which one a profile gets.

A template folder holds the default variant (``winter_sale/subject.txt``…) and any number of
locale variants in subfolders named by locale (``winter_sale/fr/``, ``winter_sale/de/``,
``winter_sale/fr-CA/``), each with the same parts. A profile's ``locale`` (``crm.profile``)
picks one by an explicit chain: the locale itself (``fr-CA``; case and ``_`` do not matter),
its language (``fr``), the step's ``locales.fallback`` for either (``{ca: es}``), then the
default: the folder's own parts, or the variant ``locales.default`` names. A profile no link
of the chain reaches gets no message (``no_variant``) — which validation rules out ahead:
a folder without a default variant must name one in ``locales.default``.

Validation (:func:`variant_problems`) checks every variant for the same parts and the same
template variables as the default, so a translation that drops ``unsubscribe_url`` or adds
``profile.frist_name`` is caught before anything is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

DEFAULT = "default"
"""The variant of the folder's own parts."""
_LOCALE_FOLDER = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


def looks_like_locale(name: str) -> bool:
    """A folder name that is a locale (``fr``, ``fr-CA``, ``pt_BR``), not a template part."""
    return bool(_LOCALE_FOLDER.match(name))


def normalize(locale: str | None) -> str | None:
    """``"fr_CA "`` -> ``"fr-ca"``; empty -> None."""
    if locale is None:
        return None
    value = str(locale).strip().replace("_", "-").lower()
    return value or None


@dataclass(frozen=True)
class Choice:
    """The variant a locale got, and the chain it went down to get there."""

    variant: str | None
    chain: tuple[str, ...]
    locale: str | None

    def explain(self) -> str:
        if self.variant is None:
            return f"locale {self.locale!r}: no variant for {' → '.join(self.chain)}, and no default"
        if self.locale is None:
            return f"variant {self.variant} (the profile has no locale)"
        tried = list(self.chain[: self.chain.index(self.variant) + 1]) if self.variant in self.chain else list(self.chain)
        if len(tried) == 1:
            return f"variant {self.variant} (the profile's locale {self.locale!r})"
        return f"variant {self.variant} (profile locale {self.locale!r}: {' → '.join(tried)})"


@dataclass(frozen=True)
class Variants:
    """The variants of one template folder and the rules that pick one.

    :param variants: variant names: :data:`DEFAULT` when the folder has its own parts, and
        each locale subfolder's name as written (``fr-CA``).
    :param fallback: the step's ``locales.fallback``, normalized keys and values.
    :param default: the variant for locales the chain does not reach (``locales.default``,
        else :data:`DEFAULT` when the folder has its own parts, else None).
    """

    template: str
    variants: tuple[str, ...]
    fallback: Mapping[str, str] = field(default_factory=dict)
    default: str | None = DEFAULT
    _by_key: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_key.update({normalize(v) or v: v for v in self.variants if v != DEFAULT})

    @classmethod
    def discover(
        cls,
        templates: Path,
        template: str,
        parts: Sequence[str],
        fallback: Mapping[str, str] | None = None,
        default: str | None = None,
    ) -> Variants:
        """The variants found in ``templates/template``: the folder's own parts (if any is
        there) and each subfolder named like a locale holding any of ``parts``."""
        folder = templates / template
        found = [DEFAULT] if any((folder / part).is_file() for part in parts) else []
        if folder.is_dir():
            found += sorted(
                child.name for child in folder.iterdir()
                if child.is_dir() and _LOCALE_FOLDER.match(child.name) and any((child / p).is_file() for p in parts)
            )
        by_key = {normalize(v): v for v in found if v != DEFAULT}
        chosen_default = (by_key.get(normalize(default)) or default) if default else (DEFAULT if DEFAULT in found else None)
        return cls(
            template,
            tuple(found),
            {normalize(k) or k: normalize(v) or v for k, v in (fallback or {}).items()},
            chosen_default,
        )

    @property
    def localized(self) -> bool:
        """More than the default: the profile's locale must be read to choose."""
        return any(v != DEFAULT for v in self.variants)

    def folder(self, variant: str) -> str:
        """The template folder of ``variant``, relative to the templates root."""
        return self.template if variant == DEFAULT else f"{self.template}/{variant}"

    def chain(self, locale: str | None) -> tuple[str, ...]:
        """The locales tried for ``locale``, in order, before the default."""
        key = normalize(locale)
        tried: list[str] = []
        pending = [key] if key else []
        while pending:
            current = pending.pop(0)
            if current in tried:
                continue  # a fallback cycle ends where it started
            tried.append(current)
            language = current.split("-", 1)[0]
            if language != current:
                pending.insert(0, language)
            if current in self.fallback:
                pending.append(self.fallback[current])
        return tuple(tried)

    def choose(self, locale: str | None) -> Choice:
        chain = self.chain(locale)
        for key in chain:
            if key in self._by_key:
                return Choice(self._by_key[key], chain, locale)
        return Choice(self.default, (*chain, self.default) if self.default else chain, locale)


def variant_problems(
    variants: Variants,
    parts: Sequence[str],
    used: Mapping[str, Mapping[str, frozenset[str]]],
    missing: Mapping[str, list[str]],
) -> list[str]:
    """What is wrong with a folder's variants: no default, a ``locales.default`` or fallback
    naming no variant, a variant lacking parts (``missing``: parts by variant), and a variant
    part whose template variables (``used``: names by variant, then part) differ from the
    same part of the default's."""
    where = variants.template
    problems = []
    if variants.default is None:
        problems.append(
            f"{where}: no default variant (the parts directly in {where}/) and no locales.default: a profile "
            f"whose locale has no variant ({', '.join(v for v in variants.variants)} exist) would get nothing; "
            "add the default parts or set locales.default to one of the variants"
        )
    elif variants.default not in variants.variants:
        problems.append(
            f"locales.default: {variants.default!r} is not a variant of {where}; variants: "
            f"{', '.join(variants.variants) or 'none'}"
        )
    known = {normalize(v) for v in variants.variants}
    for source, target in variants.fallback.items():
        if target not in known and target.split("-", 1)[0] not in known:
            problems.append(
                f"locales.fallback: {source} -> {target}, but {where} has no variant {target!r}; variants: "
                f"{', '.join(variants.variants)}"
            )
    for variant, lacking in missing.items():
        if lacking:
            problems.append(f"{variants.folder(variant)}: lacks {', '.join(lacking)} (every variant has {', '.join(parts)})")
    reference = variants.default if variants.default in used else next(iter(used), None)
    if reference is not None:
        for variant, by_part in used.items():
            if variant == reference:
                continue
            for part, names in by_part.items():
                expected = used[reference].get(part)
                if expected is None:
                    continue
                lacks, extra = sorted(expected - names), sorted(names - expected)
                if lacks or extra:
                    said = []
                    if lacks:
                        said.append(f"lacks {', '.join(lacks)}")
                    if extra:
                        said.append(f"uses {', '.join(extra)} that {variants.folder(reference)}/{part} does not")
                    problems.append(
                        f"{variants.folder(variant)}/{part}: {'; '.join(said)} (every variant uses the same "
                        "variables, so no translation drops a link or a field)"
                    )
    return problems


__all__ = ["DEFAULT", "Choice", "Variants", "looks_like_locale", "normalize", "variant_problems"]
