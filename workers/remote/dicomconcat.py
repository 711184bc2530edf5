"""Concatenations on a DICOMweb server: a pyramid level (or associated image) split over
several instances read as one.

A writer splits a large level into instances of a bounded size (OrthancWSIDicomizer's
``--max-size``, 10 MB by default): the parts share a SOPInstanceUIDOfConcatenationSource
and each says where its frames start among the level's (ConcatenationFrameOffsetNumber).
wsidicom's file source groups such files into one instance whose frame index runs over
all of them. Its web source (0.31) makes one instance of each part instead: the parts
then share one identifier, the level keeps the last one, whose tile index numbers frames
from its offset but asks its own instance for them -- tiles of the other parts are
missing (blank), and the frames of a part that does not start at 0 are past its end.

:func:`joined` puts each concatenation's parts back together as one instance whose image
data (:class:`ConcatenatedFrames`) indexes frames over all parts, as the file source
does, and asks each frame of the part holding it, by its number there: frame ``i`` of
the level is frame ``i - offset + 1`` of the part whose frames start at ``offset``.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from pydicom.uid import UID
from wsidicom.cache import DecodedFrameCache, EncodedFrameCache
from wsidicom.instance import WsiDataset, WsiInstance
from wsidicom.web.wsidicom_web_client import WsiDicomWebClient
from wsidicom.web.wsidicom_web_image_data import WsiDicomWebImageData
from wsidicom.web.wsidicom_web_source import WsiDicomWebSource

from tilecast.common.errors import UnsupportedImage

# The instance lists of wsidicom's web source (0.31), each put back together.
SOURCE_LISTS = (
    "_level_instances",
    "_label_instances",
    "_overview_instances",
    "_thumbnail_instances",
)


@dataclass(frozen=True)
class Part:
    """One instance of a concatenation: its UID and its frames' place in the whole."""

    instance: UID
    offset: int  # frames of the parts before it
    count: int

    @property
    def end(self) -> int:
        return self.offset + self.count


def parts_of(datasets: Sequence[WsiDataset]) -> list[Part]:
    """The parts of one concatenation in frame order; UnsupportedImage unless their
    frames follow each other from the first without a gap or overlap (a part missing
    on the server, or offsets that do not add up)."""
    parts = sorted(
        (
            Part(UID(dataset.uids.instance), dataset.frame_offset, dataset.frame_count)
            for dataset in datasets
        ),
        key=lambda part: part.offset,
    )
    expected = 0
    for part in parts:
        if part.offset != expected or part.count < 1:
            raise UnsupportedImage(
                "the instances of a concatenation do not hold consecutive frames: "
                "a part is missing or its frame offset is wrong"
            )
        expected = part.end
    return parts


class ConcatenatedFrames(WsiDicomWebImageData):
    """wsidicom's web image data over every part of a concatenation: one tile index
    over all parts' frames, each frame asked of the part that holds it."""

    def __init__(
        self,
        client: WsiDicomWebClient,
        datasets: Sequence[WsiDataset],
        transfer_syntax: UID,
        decoded_frame_cache: DecodedFrameCache,
        encoded_frame_cache: EncodedFrameCache,
    ) -> None:
        """``datasets``: the parts', in frame order."""
        self._parts = parts_of(datasets)
        self._starts = [part.offset for part in self._parts]
        super().__init__(
            client, datasets[0], transfer_syntax, decoded_frame_cache, encoded_frame_cache
        )
        # The tile index (built lazily from these) numbers frames over all parts.
        self._datasets = list(datasets)

    def locate(self, frame_index: int) -> tuple[UID, int]:
        """The part holding the concatenation's frame ``frame_index`` (from 0), and the
        frame's number in it (from 1, as WADO-RS counts)."""
        at = bisect.bisect_right(self._starts, frame_index) - 1
        if frame_index < 0 or at < 0 or frame_index >= self._parts[at].end:
            raise UnsupportedImage(f"frame {frame_index} is in no part of the concatenation")
        part = self._parts[at]
        return part.instance, frame_index - part.offset + 1

    def _get_tile_frame(self, frame_index: int) -> bytes:
        return next(self._get_tile_frames([frame_index]))

    def _get_tile_frames(self, frame_indices: Iterable[int]) -> Iterator[bytes]:
        # One request per run of frames held by the same part, in the order asked.
        located = (self.locate(index) for index in frame_indices)
        for instance, run in itertools.groupby(located, key=lambda found: found[0]):
            yield from self._client.get_frames(
                self._study_uid,
                self._series_uid,
                instance,
                [number for _instance, number in run],
                self._transfer_syntax,
            )


def joined(source: WsiDicomWebSource, client: WsiDicomWebClient) -> WsiDicomWebSource:
    """``source`` with each concatenation's parts made one instance (in place)."""
    for name in SOURCE_LISTS:
        setattr(source, name, _joined_instances(getattr(source, name), source, client))
    return source


def _joined_instances(
    instances: list[WsiInstance], source: WsiDicomWebSource, client: WsiDicomWebClient
) -> list[WsiInstance]:
    groups: dict[UID, list[WsiInstance]] = {}
    for instance in instances:
        groups.setdefault(instance.identifier, []).append(instance)
    joined: list[WsiInstance] = []
    for group in groups.values():
        datasets = sorted(
            (instance.dataset for instance in group), key=lambda dataset: dataset.frame_offset
        )
        if all(dataset.uids.concatenation is None for dataset in datasets):
            joined.extend(group)  # instances of their own
            continue
        syntaxes = {instance.image_data.transfer_syntax for instance in group}
        if len(syntaxes) != 1:
            raise UnsupportedImage(
                "the instances of a concatenation are stored in different transfer syntaxes"
            )
        frames = ConcatenatedFrames(
            client,
            datasets,
            syntaxes.pop(),
            source._decoded_frame_cache,
            source._encoded_frame_cache,
        )
        joined.append(WsiInstance(datasets, frames))
    return joined
