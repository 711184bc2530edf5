"""The DICOM UIDs of tilecast's DICOMweb view (api/protocols/dicomweb*.py).

Every source is a study, every frame of it a series, every level of a frame an
instance. Their UIDs are derived, never stored: ``2.25.`` followed by the decimal
value of a name-based UUID (version 5, SHA-1) of the source id, its generation and
the object's place, in tilecast's own UUID namespace :data:`NAMESPACE`::

    study            uuid5(NAMESPACE, "study/{source}/{generation}")
    series           uuid5(NAMESPACE, "series/{source}/{generation}/{frame}")
    instance         uuid5(NAMESPACE, "instance/{source}/{generation}/{frame}/{level}")
    frame of reference, specimen, dimension organization: the same with their own word

``2.25.<integer of a UUID>`` is the UID form DICOM defines for UUIDs (PS3.5 B.2): no
registered root is needed, and at most 44 characters stay under the 64 allowed. The
same source and generation give the same UIDs in every api process and after any
restart; a changed file is registered under a new generation, so it gets new UIDs and
a viewer never mixes old and new frames. ``level`` is tilecast's level ``z`` (0 = the
coarsest), ``frame`` tilecast's 0-based frame index.
"""

from __future__ import annotations

import uuid

# tilecast's namespace for name-based UUIDs (a random UUID, fixed once: changing it
# would change every UID tilecast ever handed out).
NAMESPACE = uuid.UUID("6f1c0f0e-3d55-4c35-9a8e-2b9f5d1c7a41")
UUID_ROOT = "2.25."


def derived_uid(*parts: object) -> str:
    """``2.25.<int>`` of the version-5 UUID of ``parts`` joined by ``/``."""
    name = "/".join(str(part) for part in parts)
    return UUID_ROOT + str(uuid.uuid5(NAMESPACE, name).int)


def study_uid(source: str, generation: int) -> str:
    return derived_uid("study", source, generation)


def series_uid(source: str, generation: int, frame: int) -> str:
    return derived_uid("series", source, generation, frame)


def instance_uid(source: str, generation: int, frame: int, level: int) -> str:
    return derived_uid("instance", source, generation, frame, level)


def frame_of_reference_uid(source: str, generation: int) -> str:
    """One slide coordinate system per source: every frame and level shares it."""
    return derived_uid("frame-of-reference", source, generation)


def specimen_uid(source: str, generation: int) -> str:
    return derived_uid("specimen", source, generation)


def dimension_organization_uid(source: str, generation: int, frame: int, level: int) -> str:
    return derived_uid("dimension-organization", source, generation, frame, level)


def is_uid(text: str) -> bool:
    """Whether ``text`` is a well-formed UID (digits and dots, no leading zeros, at
    most 64 characters): anything else is answered 404 before any lookup."""
    if not 0 < len(text) <= 64:
        return False
    parts = text.split(".")
    return all(
        part.isascii() and part.isdigit() and (part == "0" or part[0] != "0") for part in parts
    )
