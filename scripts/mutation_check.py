"""Plant known bugs in the core, one at a time, and check that a named test catches each.

A bug the suite lets through is a promise no test keeps. Each mutant below is a small edit of the
package's source (exact text, replaced once: a mutant whose text is gone fails the check, so the list
follows the code), the property it breaks, and the tests that must catch it. The repository is copied
to a scratch folder (the working tree is never edited); the named tests must pass there unmutated (or,
with --passed, be listed as passed by runs on the same files, as CI's passes are); then each mutant is
applied alone and its tests run until one fails. Exit status 1 when a mutant survives, no longer
applies, or a named test does not pass unmutated.

    python scripts/mutation_check.py                # every mutant: a table, bug -> the test that caught it
    python scripts/mutation_check.py -k audio -v    # those whose name contains "audio", with pytest's output
    python scripts/mutation_check.py --list

A test that compares the output with the package's own reference (the NumPy styles) cannot see a bug
planted in that reference: such tests also state what they expect (e.g. the fill colour) directly.

The GPU-path mutants need the rehearsal packages (DALI's CPU reader, CPU PyTorch, g++), as CI's
second pass does; without them their tests skip, and a skipped test catches nothing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("trt_anon", "tests", "scripts", "pyproject.toml", "setup.cfg")  # without git


@dataclass(frozen=True)
class Mutant:
    name: str
    prop: str                          # the property of the README it breaks
    path: str                          # file it edits, relative to the repository
    edits: tuple[tuple[str, str], ...]  # (exact text, replacement), each found exactly once
    tests: tuple[str, ...]             # pytest node ids that must catch it (run in order, first failure wins)


def m(name: str, prop: str, path: str, old: str, new: str, *tests: str, more: tuple = ()) -> Mutant:
    return Mutant(name, prop, path, ((old, new), *more), tests)


E2E = "tests/test_end_to_end.py::"
ROB = "tests/test_robustness.py::"
TRACK = "tests/test_track.py::"
KERN = "tests/test_kernels_on_cpu.py::"
PROV = "tests/test_provenance.py::"

MUTANTS = [
    # --- frames and timestamps
    m("last frames never written", "frames", "trt_anon/pipeline.py",
      "        write(anon.end())\n", "        anon.end()\n",
      E2E + "test_faces_mosaicked_and_background_kept[moving]"),
    m("video shifted by one tick", "timestamps", "trt_anon/encode/pyav.py",
      "            frame.pts, frame.time_base = t, self.frame_time_base\n            self._mux(",
      "            frame.pts, frame.time_base = t + 1, self.frame_time_base\n            self._mux(",
      E2E + "test_frames_timestamps_and_audio_identical"),
    m("variable frame rate re-timed evenly", "timestamps", "trt_anon/encode/pyav.py",
      "        for pixels, t in zip(frames, self._times(pts)):",
      "        pts = [pts[0] + (pts[-1] - pts[0]) * k // max(len(pts) - 1, 1) for k in range(len(pts))]\n"
      "        for pixels, t in zip(frames, self._times(pts)):",
      ROB + "test_variable_frame_rate_timestamps_kept"),
    # --- audio and subtitles
    m("copied audio delayed 0.5 s, bytes unchanged", "audio timing", "trt_anon/media/container.py",
      "            t = ts * p.time_base\n            p.stream = out\n",
      "            t = ts * p.time_base\n            if p.stream.type == 'audio':\n"
      "                p.pts, p.dts = p.pts + round(Fraction(1, 2) / p.time_base), p.dts + round(Fraction(1, 2) / "
      "p.time_base)\n            p.stream = out\n",
      E2E + "test_frames_timestamps_and_audio_identical"),
    m("subtitles delayed 0.5 s", "subtitle timing", "trt_anon/media/container.py",
      "            t = ts * p.time_base\n            p.stream = out\n",
      "            t = ts * p.time_base\n            if p.stream.type == 'subtitle':\n"
      "                p.pts, p.dts = p.pts + round(Fraction(1, 2) / p.time_base), p.dts + round(Fraction(1, 2) / "
      "p.time_base)\n            p.stream = out\n",
      ROB + "test_several_audio_streams_and_subtitles_copied"),
    m("audio after the last video packet lost", "audio", "trt_anon/sink.py",
      "        self.remuxer.advance(None)\n", "        pass\n",
      E2E + "test_frames_timestamps_and_audio_identical"),
    # --- redaction, per style and per backend
    m("frames go through RGB between decoder and encoder", "pixels kept as decoded", "trt_anon/planar.py",
      "        frame.colorspace, frame.color_range = self.colorspace, self.color_range\n        return frame\n",
      "        frame.colorspace, frame.color_range = self.colorspace, self.color_range\n"
      "        return frame.reformat(format=\"rgb24\").reformat(format=self.pix_fmt)\n",
      "tests/test_planar.py::test_untouched_pixels_are_the_decoders_bit_for_bit[mosaic-yuv420p-None]"),
    m("mosaic misses the last row of cells", "redaction (mosaic)", "trt_anon/redact/styles/mosaic.py",
      "        ys, xs = cell_edges(cy0, cy1, c, height, sy), cell_edges(cx0, cx1, c, width, sx)\n",
      "        ys, xs = cell_edges(cy0, cy1 - 1, c, height, sy), cell_edges(cx0, cx1, c, width, sx)\n",
      "tests/test_mosaic.py::test_matches_definition_random[25]",
      E2E + "test_faces_mosaicked_and_background_kept[moving]"),
    m("frame 0 written unredacted (its boxes still in the JSON)", "redaction", "trt_anon/pipeline.py",
      "        batch, boxes = anon.redact(frames, final)\n",
      "        batch, _ = anon.redact(frames, [Regions.empty() if report.frames + k == 0 else d\n"
      "                                        for k, d in enumerate(final)])\n"
      "        boxes = anon.boxes(final, *anon._size(frames[0][None]))\n",
      TRACK + "test_small_face_approaching_is_covered_from_its_first_frame[lfw:1]"),
    m("blur drawn as the mosaic", "redaction (blur)", "trt_anon/redact/styles/__init__.py",
      'import_module(f"{__name__}.{name}")', 'import_module(f"{__name__}.{name.replace(\'blur\', \'mosaic\')}")',
      "tests/test_styles.py::test_styles_end_to_end[blur]"),
    m("solid ignores --fill-color", "redaction (solid)", "trt_anon/redact/styles/solid.py",
      "        return fill_cells(frame, boxes, cells, fill, shift)\n",
      "        return fill_cells(frame, boxes, cells, np.zeros_like(fill), shift)\n",
      "tests/test_styles.py::test_styles_end_to_end[solid]"),
    m("GPU path ignores --style and --fill-color", "redaction (GPU backend)", "trt_anon/redact/__init__.py",
      "        return CupyRedactor(config.mosaic_cell, config.style, config.fill_color, box_margin(config))\n",
      "        return CupyRedactor(config.mosaic_cell, margin=box_margin(config))\n",
      KERN + "test_gpu_path_gets_the_style_and_colour_asked_for[blur]",
      KERN + "test_gpu_path_writes_each_style_as_the_reference_does[blur]"),
    m("GPU path ignores --fill-color", "redaction (GPU backend)", "trt_anon/redact/__init__.py",
      "        return CupyRedactor(config.mosaic_cell, config.style, config.fill_color, box_margin(config))\n",
      "        return CupyRedactor(config.mosaic_cell, config.style, margin=box_margin(config))\n",
      KERN + "test_gpu_path_gets_the_style_and_colour_asked_for[solid]"),
    m("GPU mosaic kernel rounds down", "redaction (GPU kernel)", "trt_anon/redact/cells.py",
      "m[j] = (unsigned int)((sum[j] + n / 2) / n);", "m[j] = (unsigned int)(sum[j] / n);",
      KERN + "test_mosaic_kernel_equals_numpy_reference[25]"),
    m("boxes of rotated video mapped back wrongly", "redaction (portrait video)", "trt_anon/frames.py",
      "        sx, sy = {1: (width - y, x), 2: (width - x, height - y), 3: (y, height - x)}[k]\n",
      "        sx, sy = {1: (y, height - x), 2: (width - x, height - y), 3: (width - y, x)}[k]\n",
      ROB + "test_rotated_detection_maps_back_to_stored_frame[90]"),
    # --- eyes
    m("eyes target redacts whole faces", "eyes", "trt_anon/redact/__init__.py",
      '    if target == "eyes":\n        return grow(det.eyes', '    if target == "eye":\n        return grow(det.eyes',
      E2E + "test_eyes_target_covers_only_the_eye_band[1]"),
    m("eye band never refreshed after a face is found", "eyes", "trt_anon/track.py",
      "                if refresh or f - t.eyes_at >= self.eyes_every:\n", "                if f == t.eyes_at:\n",
      TRACK + "test_eyes_refreshed_every_4th_frame_and_carried_with_face"),
    # --- hold and back-fill
    m("no hold after a missed detection", "hold", "trt_anon/track.py",
      "            if look - max(t.hit_look, t.hidden_look) <= self.ttl or t.occluded and f",
      "            if False and f",
      TRACK + "test_hold_and_back_fill_cover_missed_frames"),
    m("a face behind another held no longer than ttl", "hold (occlusion)", "trt_anon/track.py",
      " or t.occluded and f - t.last_hit <= self.lookback:", ":",
      TRACK + "test_a_face_behind_another_is_held_along_its_way_and_keeps_its_number[1]",
      "tests/test_occlusion.py::test_every_pixel_in_view_is_covered_through_the_crossing[mosaic]"),
    m("a face coming out from behind another starts a new track", "hold (occlusion)", "trt_anon/track.py",
      "            if j in matched or not t.occluded or t.cls != cls:", "            if True:",
      TRACK + "test_a_face_that_comes_out_ahead_of_its_way_keeps_its_number"),
    m("no back-fill", "back-fill", "trt_anon/track.py",
      "                    box = self._fill(t, g)\n", "                    box = None\n",
      TRACK + "test_hold_and_back_fill_cover_missed_frames"),
    m("back-fill stops at ttl", "back-fill", "trt_anon/track.py",
      "        if fit is not None and (near or d <= 2 * fit[1]):\n",
      "        if fit is not None and near:\n",
      TRACK + "test_back_fill_reaches_past_ttl_along_motion",
      TRACK + "test_small_face_approaching_is_covered_from_its_first_frame[lfw:1]"),
    m("a weak candidate alone starts a track", "back-fill", "trt_anon/track.py",
      "            if j < 0 and weak[i]:", "            if j < 0 and weak[i] and False:",
      TRACK + "test_weak_candidates_alone_never_make_a_box"),
    # --- metadata and data streams
    m("file-level location and device tags kept", "metadata", "trt_anon/media/container.py",
      "    return dict(tags) if keep else {", "    return dict(tags) if True else {",
      ROB + "test_location_and_device_tags_removed_unless_kept"),
    m("video stream's tags copied unscrubbed", "metadata (streams)", "trt_anon/sink.py",
      "    vstream.metadata.update(media.container.stream_tags(stream, cfg.keep_metadata))\n",
      "    vstream.metadata.update(media.container.stream_tags(stream, True))\n",
      ROB + "test_stream_level_location_and_device_tags_removed_unless_kept"),
    m("audio/subtitle streams' tags copied unscrubbed", "metadata (streams)", "trt_anon/media/container.py",
      "            out.metadata.update(stream_tags(s, keep_metadata))\n",
      "            out.metadata.update(stream_tags(s, True))\n",
      ROB + "test_stream_level_location_and_device_tags_removed_unless_kept"),
    m("GPS data stream copied", "data streams", "trt_anon/media/container.py",
      '            if s.type not in ("audio", "subtitle"):  # a data stream',
      '            if s.type == "data":\n                self.map[s.index] = output.add_stream_from_template(s)\n'
      '                continue\n            if s.type not in ("audio", "subtitle"):  # a data stream',
      ROB + "test_gps_track_and_second_camera_dropped[.mp4-mp4-bin_data]"),
    m("second video stream copied", "data streams", "trt_anon/media/container.py",
      '            if s.type not in ("audio", "subtitle"):  # a data stream',
      '            if s.type == "video":\n                self.map[s.index] = output.add_stream_from_template(s)\n'
      '                continue\n            if s.type not in ("audio", "subtitle"):  # a data stream',
      ROB + "test_gps_track_and_second_camera_dropped[.mp4-mp4-bin_data]"),
    # --- fail closed
    m("written straight to the output's name (removed on error)", "fail-closed", "trt_anon/media/files.py",
      "    tmp_path = Path(tmp)\n", "    os.unlink(tmp)\n    tmp_path = dst\n",
      ROB + "test_detector_failure_mid_file_writes_nothing",
      "tests/test_codecs.py::test_failed_conversion_leaves_nothing",
      more=(("        if dst.exists() and not overwrite:\n", "        if False:\n"),)),
    m("temporary file left behind on error", "fail-closed", "trt_anon/media/files.py",
      "            tmp_path.unlink()\n", "            pass\n",
      ROB + "test_detector_failure_mid_file_writes_nothing"),
    # --- Content Credentials (--sign)
    m("the input's thumbnails kept in the signed manifest", "Content Credentials: no picture of the input",
      "trt_anon/provenance.py", 'PICTURES = ("c2pa.thumbnail", "c2pa.depthmap")', "PICTURES = ()",
      PROV + "test_a_photo_keeps_its_credentials_as_parent_without_any_picture_of_the_input[False]",
      more=(("        _check_signed(store, job.output)\n", ""),)),
    m("the capture's GPS and serial kept in the signed manifest", "Content Credentials: no location or device",
      "trt_anon/provenance.py", "drop = PICTURES if keep_metadata else PICTURES + METADATA", "drop = PICTURES",
      PROV + "test_a_photo_keeps_its_credentials_as_parent_without_any_picture_of_the_input[False]"),
    m("verify passes Content Credentials that do not validate", "Content Credentials: verifiable",
      "trt_anon/provenance.py", 'if trust is not None or f.get("code") != UNTRUSTED]', "if False]",
      PROV + "test_one_changed_byte_fails_validation"),
    # --- host copies on the GPU path
    m("GPU redactor takes the batch through the host", "GPU path: frames stay on the device",
      "trt_anon/redact/gpu.py",
      "        batch = device_frames(frames)  # redacted in place",
      "        batch = cp.asarray(cp.asnumpy(device_frames(frames)))  # redacted in place",
      "tests/test_gpu_strict.py::test_gpu_path_with_nvenc_no_frame_comes_to_the_host"),
    # --- live streams, review and fix, the audit record
    m("late live frames never dropped or covered", "live: bounded delay", "trt_anon/live.py",
      "a.frame is not None and now - a.at > max_wait]", "a.frame is not None and False]",
      "tests/test_live.py::test_frames_that_waited_too_long_are_never_handed_out_raw[drop]"),
    m("live audio keeps the source's clock, not the video's", "live: audio in sync", "trt_anon/live.py",
      "ticks = round(self.shift / packet.time_base)", "ticks = 0",
      "tests/test_live.py::test_a_camera_that_comes_back_goes_on_with_times_and_audio_in_step"),
    m("a detector error mid-stream writes the waiting frames as they are", "live: fail closed", "trt_anon/live.py",
      '            if a.kind != "dropped":\n                self._cover(a)\n',
      '            if a.kind == "frame":\n                self.sink.write(a.frame, a)\n',
      "tests/test_live.py::test_a_detector_error_mid_stream_covers_the_frames_that_waited"),
    m("live frames wait for frames that have not come (no deadline)", "live: bounded delay", "trt_anon/live.py",
      "        if n:\n            self._track(lambda: self.anon.end(n, look))\n", "",
      "tests/test_live.py::test_a_camera_that_stalls_does_not_hold_the_frames_before_it"),
    m("a live stream opened with FFmpeg's read-ahead for its frame rate", "live: start-up", "trt_anon/live.py",
      'options={"fpsprobesize": "0", **self.options}', "options=self.options",
      "tests/test_live.py::test_the_first_frames_come_at_the_cameras_pace_not_at_once"),
    m("a live frame the decoder repaired is written as trusted", "live: fail closed", "trt_anon/live.py",
      "self.repairing = frame.is_corrupt or (self.repairing and not frame.key_frame)", "self.repairing = False",
      "tests/test_live.py::test_a_camera_in_bursts_or_damaged_never_shows_a_face[damaged]"),
    m("one audio packet muxed by every sink", "live: audio, recordings", "trt_anon/live.py",
      "            packet = av.Packet(_raw_aac(data) if self.raw_aac else data)\n",
      "            packet = a.packet\n",
      "tests/test_live.py::test_every_output_with_every_recording_plays_clean[ts]"),
    m("AAC from MPEG-TS into a recording with its ADTS headers", "live: audio, recordings", "trt_anon/live.py",
      "            packet = av.Packet(_raw_aac(data) if self.raw_aac else data)\n",
      "            packet = av.Packet(data)\n",
      "tests/test_live.py::test_every_output_with_every_recording_plays_clean[ts]",
      "tests/test_live.py::test_a_camera_over_tcp_is_recorded_with_every_face_covered"),
    m("decisions redact the kept person and show the others", "review and fix", "trt_anon/decisions.py",
      'f.get("track") in self.keep or', 'f.get("track") not in self.keep or',
      "tests/test_decisions.py::test_a_person_kept_visible_and_a_region_added"),
    # --- --keep-face: a consenting person kept, fail safe
    m("a kept stretch shown past its last matching face", "keep the people who consented", "trt_anon/consent.py",
      "<= g <= s.last_match for", "<= g <= s.end for",
      "tests/test_consent.py::test_a_track_is_shown_from_its_start_to_its_last_match_once_several_faces_matched"),
    m("a face that matches nobody leaves the track kept", "keep the people who consented", "trt_anon/consent.py",
      "            state.rejected = True\n", "            state.rejected = False\n",
      "tests/test_consent.py::test_one_face_that_matches_nobody_redacts_the_track_from_then_on"),
    m("a stretch goes on where another face may have taken its place", "keep the people who consented",
      "trt_anon/consent.py",
      "            if not (t.last_hit == f and t.sure and not risky):\n",
      "            if not (t.last_hit == f and t.sure):\n",
      "tests/test_consent.py::test_a_stretch_ends_where_the_face_is_missed_or_another_may_take_its_place"),
    m("two overlapping faces told apart without both found at the last look", "keep the people who consented",
      "trt_anon/consent.py",
      "        both = [t.last_hit == f and state.box is not None and state.hit == last for t, state in pair]\n",
      "        both = [t.last_hit == f and state.box is not None for t, state in pair]\n",
      "tests/test_consent.py::test_a_stretch_ends_where_the_face_is_missed_or_another_may_take_its_place"),
    m("a face found at this look only taken for one not found", "keep the people who consented",
      "trt_anon/consent.py",
      "        if k is None or pair[1 - k][0].last_hit == f:", "        if k is None:",
      "tests/test_consent.py::test_a_stretch_ends_where_the_face_is_missed_or_another_may_take_its_place"),
    m("a face not found never taken to be where another one is found", "keep the people who consented",
      "trt_anon/consent.py",
      "        held = np.all(inner[:2] >= area[:2]) and np.all(inner[2:] <= area[2:])\n",
      "        held = False\n",
      "tests/test_consent.py::test_a_face_lost_inside_hers_ends_her_stretch_only_once_it_may_be_where_she_is",
      "tests/test_consent.py::test_a_face_not_found_may_be_as_far_as_its_measured_motion_takes_it"),
    m("a face found beside one not found: its box jumping toward the other not seen", "keep the people who consented",
      "trt_anon/consent.py", "        risky[[i, j]] = held or not _stays(t, state, last_seen)",
      "        risky[[i, j]] = held",
      "tests/test_consent.py::test_her_box_jumping_toward_a_face_not_found_ends_her_stretch[True]"),
    m("where a face not found may be: the found face's own area taken for it", "keep the people who consented",
      "trt_anon/consent.py", "areas[(i, j)[1 - k]]", "areas[(i, j)[k]]",
      "tests/test_consent.py::test_a_face_lost_inside_hers_ends_her_stretch_only_once_it_may_be_where_she_is"),
    m("where a face not found may be: the detector's jitter on the other box not allowed for",
      "keep the people who consented", "trt_anon/consent.py",
      "        inner, area = _grown(box, -PAD * float(box[2] - box[0])), areas[(i, j)[1 - k]]",
      "        inner, area = box, areas[(i, j)[1 - k]]",
      "tests/test_consent.py::test_a_face_lost_inside_hers_ends_her_stretch_only_once_it_may_be_where_she_is"),
    m("a narrowed face taken for a whole one (a mismatch redacts)", "keep the people who consented",
      "trt_anon/consent.py",
      "whole = not near and abs(state.shapes[-1] / state.shape() - 1) <= SHAPE", "whole = not near",
      "tests/test_consent.py::test_a_face_whose_box_narrows_counts_only_where_it_matches"),
    m("a partly hidden face's shape taken for the track's own", "keep the people who consented",
      "trt_anon/consent.py", "        if whole:   # (the track's own shape)\n", "        if True:\n",
      "tests/test_consent.py::test_a_face_whose_box_narrows_counts_only_where_it_matches"),
    m("a partly hidden face that matches nobody redacts the track", "keep the people who consented",
      "trt_anon/consent.py", "        if not whole and (dist is None or min(dist) >= THRESHOLD):\n",
      "        if not whole and dist is None:\n",
      "tests/test_consent.py::test_a_face_beside_another_counts_only_where_it_matches"),
    m("a partly hidden face that does not match judged on a whole face it was becoming hidden in",
      "keep the people who consented", "trt_anon/consent.py",
      "            s.recent = [r for r in s.recent if r.frame <= f - SETTLE]\n",
      "            s.recent = [r for r in s.recent if r.frame < f]\n",
      "tests/test_consent.py::test_a_partly_hidden_face_that_does_not_match_is_judged_on_a_whole_one_before_it"),
    m("a shown face partly hidden compared as seldom as a whole one", "keep the people who consented",
      "trt_anon/consent.py",
      "        due = self.every if whole and s.shown or not whole and state.misses >= SAMPLES else SPACING\n",
      "        due = self.every if s.shown or not whole and state.misses >= SAMPLES else SPACING\n",
      "tests/test_consent.py::test_a_shown_face_partly_hidden_is_compared_every_few_frames"),
    m("a face cut by the frame's edge taken for a whole one (a mismatch redacts)", "keep the people who consented",
      "trt_anon/consent.py",
      "        whole = whole and x1 > BORDER and y1 > BORDER", "        whole = whole or x1 > BORDER and y1 > BORDER",
      "tests/test_consent.py::test_a_face_cut_by_the_frame_edge_counts_only_where_it_matches"),
    m("a partly hidden face that matches nobody lets its stretch go on", "keep the people who consented",
      "trt_anon/consent.py", "            if self._compare(state, s, s.best) is False:\n",
      "            if self._compare(state, s, s.best) is False and False:\n",
      "tests/test_consent.py::test_a_face_beside_another_counts_only_where_it_matches"),
    m("the stretch after a face that matched nobody shown from its start", "keep the people who consented",
      "trt_anon/consent.py", "(s.first_match if s.doubt else s.start) <= g", "s.start <= g",
      "tests/test_consent.py::test_a_face_beside_another_counts_only_where_it_matches"),
    m("a partly hidden face looking away lets its stretch go on", "keep the people who consented",
      "trt_anon/consent.py", "        if not whole and (dist is None or min(dist) >= THRESHOLD):\n",
      "        if not whole and dist is not None and min(dist) >= THRESHOLD:\n",
      "tests/test_consent.py::test_a_partly_hidden_face_looking_away_ends_the_stretch_too",
      more=(("        if dist is None:\n            return None\n",
             "        if dist is None:\n            state.misses += not whole\n            return None\n"),)),
    m("the stretch after the one a face that matched nobody ended not in doubt", "keep the people who consented",
      "trt_anon/consent.py", "since=f, doubt=state.doubt)", "since=f, doubt=False)",
      "tests/test_consent.py::test_the_doubt_after_a_face_that_matched_nobody_lasts_until_a_match"),
    m("a reference photo embedded only as it is (a face lit brighter never matches)", "keep the people who consented",
      "trt_anon/consent.py", "vectors.append(model.bracket(rgb, model.landmarks(rgb, box)[1]))",
      "vectors.append(model.bracket(rgb, model.landmarks(rgb, box)[1], (1.0,)))",
      "tests/test_consent.py::test_her_face_lit_brighter_than_in_her_photo_is_kept"),
    m("a match does not let partly hidden faces be compared often again", "keep the people who consented",
      "trt_anon/consent.py", "state.person, state.misses, state.doubt = who, 0, False",
      "state.person, state.misses, state.doubt = who, state.misses, False",
      "tests/test_consent.py::test_a_match_lets_partly_hidden_faces_be_compared_often_again"),
    m("partly hidden faces never compared", "keep the people who consented", "trt_anon/consent.py",
      "score >= MIN_SCORE and (whole or f - s.since >= due - 1):", "score >= MIN_SCORE and whole:",
      "tests/test_consent.py::test_a_face_beside_another_the_whole_time_is_shown_once_matched"),
    m("partly hidden faces that match nobody compared every few frames without end", "keep the people who consented",
      "trt_anon/consent.py",
      "        due = self.every if whole and s.shown or not whole and state.misses >= SAMPLES else SPACING\n",
      "        due = self.every if whole and s.shown else SPACING\n",
      "tests/test_consent.py::test_someone_else_beside_another_is_compared_a_few_times_and_never_shown"),
    m("a partly hidden face that does not match not judged on a whole one before it", "keep the people who consented",
      "trt_anon/consent.py",
      "                misses = state.misses   # (a match",
      "                s.recent = []\n                misses = state.misses   # (a match",
      "tests/test_consent.py::test_a_partly_hidden_face_that_does_not_match_is_judged_on_a_whole_one_before_it"),
    m("a face not found reaches only as far as its last two detections moved", "keep the people who consented",
      "trt_anon/consent.py",
      "            if velocity is not None:  # fitted", "            if False:  # fitted",
      "tests/test_consent.py::test_a_face_not_found_may_be_as_far_as_its_measured_motion_takes_it"),
    m("a face beside another taken for a whole one (a mismatch redacts)", "keep the people who consented",
      "trt_anon/consent.py",
      "            whole = not near and abs(", "            whole = abs(",
      "tests/test_consent.py::test_a_face_beside_another_counts_only_where_it_matches",
      "tests/test_consent.py::test_the_demo_keeps_her_as_her_face_goes_under_the_other_head"),
    m("a stretch that ends on a weak face judged on its spoilt last faces", "keep the people who consented",
      "trt_anon/consent.py",
      "            settled = [r for r in s.recent if not spoilt or r.frame <= s.end - SETTLE]\n",
      "            settled = s.recent\n",
      "tests/test_consent.py::test_a_stretch_that_ends_on_a_weak_face_is_judged_on_one_from_before_it"),
    m("a stretch that ends on a miss judged on an earlier face", "keep the people who consented",
      "trt_anon/consent.py",
      "            settled = [r for r in s.recent if not spoilt or r.frame <= s.end - SETTLE]\n",
      "            settled = [r for r in s.recent if r.frame <= s.end - SETTLE]\n",
      "tests/test_consent.py::test_a_stretch_that_ends_on_a_miss_is_judged_on_its_last_good_face"),
    m("faces left visible are the ones not kept", "keep the people who consented", "trt_anon/redact/__init__.py",
      "        only = ~det.kept\n", "        only = det.kept\n",
      "tests/test_consent.py::test_the_consenting_person_stays_visible_and_everyone_else_is_redacted"),
    m("a visible face put back over a redacted face that may be in front", "keep the people who consented",
      "trt_anon/redact/__init__.py",
      "        behind = det.score[hidden] < det.score[k]\n", "        behind = det.score[hidden] <= det.score[k]\n",
      "tests/test_in_front.py::test_nothing_is_put_back_where_the_visible_face_may_be_the_one_behind[scores alike]"),
    m("the face behind a visible one covered by its box alone, not its own margin", "keep the people who consented",
      "trt_anon/redact/__init__.py",
      "            pixel_mask(alone[behind], alone_cells[behind], height, width, window)\n",
      "            pixel_mask(b[behind], alone_cells[behind], height, width, window)\n",
      "tests/test_in_front.py::test_a_face_in_front_is_put_back_where_the_margin_of_the_face_behind_covered_it[mosaic]"),
    m("the face behind a visible one covered as if alone only in the cells it is redacted in",
      "keep the people who consented", "trt_anon/redact/__init__.py",
      "            pixel_mask(alone[behind], alone_cells[behind], height, width, window)\n",
      "            pixel_mask(alone[behind], cells[:len(hidden)][behind], height, width, window)\n",
      "tests/test_in_front.py::test_a_face_behind_is_never_covered_less_than_alone[blur]"),
    m("a visible face put back where its box is a guess", "keep the people who consented",
      "trt_anon/redact/__init__.py",
      "    kept = np.asarray(det.kept, bool) & np.isin(det.kind, (HIT, HELD))\n",
      "    kept = np.asarray(det.kept, bool)\n",
      "tests/test_in_front.py::test_a_face_out_of_the_frame_or_a_visible_face_not_found_puts_nothing_back"),
    m("a visible face's whole box put back, its corners too", "keep the people who consented",
      "trt_anon/redact/__init__.py", "        mask = oval & ~blocked\n", "        mask = ~blocked\n",
      "tests/test_in_front.py::test_a_face_in_front_is_put_back_where_the_margin_of_the_face_behind_covered_it[mosaic]"),
    m("decisions for another input accepted", "review and fix", "trt_anon/decisions.py",
      "        if sha256(source) != made_from:\n", "        if False:\n",
      "tests/test_decisions.py::test_decisions_that_do_not_fit_are_refused_in_one_line[other input-another input]"),
    m("verify passes a changed file", "audit record", "trt_anon/audit.py",
      '        if all(digest != want["sha256"] for want in wanted):\n', "        if False:\n",
      "tests/test_audit.py::test_verify_fails_on_any_changed_byte"),
    m("SHA-256 over the first read block only", "audit record", "trt_anon/audit.py",
      '        for block in iter(lambda: f.read(1 << 20), b""):\n            h.update(block)\n',
      "        h.update(f.read(1 << 20))\n",
      "tests/test_audit.py::test_hashes_cover_files_larger_than_the_read_block"),
    # --- what the first pass must also guard: converted audio, the GPU decoder's colours, the second decode
    m("converted audio loses its dispositions", "dispositions (converted audio)", "trt_anon/media/container.py",
      "            out.disposition = s.disposition\n",
      "            if s.index not in self.converters:\n                out.disposition = s.disposition\n",
      "tests/test_streams_kept.py::test_dispositions_and_tags_kept_on_audio_converted_for_webm"),
    m("untagged SD video decoded on the GPU as BT.709", "colours (GPU decoder)", "trt_anon/encode/gpu_color.py",
      "    kr, kb = matrix(colorspace)\n    _nv12_kernel(",
      "    kr, kb = KR_KB[1] if colorspace == 2 and h < 720 else matrix(colorspace)\n    _nv12_kernel(",
      "tests/test_gpu_fallbacks.py::test_nv12_from_a_gpu_decoder_converts_like_pyav[untagged-limited-480p]"),
    m("second decode checked for an end only, not its times", "fail-closed (second decode)", "trt_anon/pipeline.py",
      "                if t != waiting[i][1]:\n", "                if t is None:\n",
      "tests/test_memory.py::test_second_decode_that_disagrees_fails_closed[time]"),
]


def tracked() -> list[str]:
    """The repository's files that git does not ignore (so the copy holds what the tests saw), else the
    package, tests and scripts."""
    try:
        r = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return [str(p.relative_to(ROOT)) for name in COPIED for p in [ROOT / name, *(ROOT / name).rglob("*")]
                if p.is_file() and "__pycache__" not in p.parts]
    return [name for name in r.stdout.decode().split("\0") if name and (ROOT / name).is_file()]


def scratch_copy(files: list[str]) -> Path:
    """``files`` copied to a new folder (the working tree is never edited)."""
    d = Path(tempfile.mkdtemp(prefix="trt_anon-mutants-"))
    for name in files:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, d / name)
    return d


def passed_in(paths: list[str]) -> set[str]:
    """Tests listed as passed in outcome files (tests/conftest.py writes them where TRT_ANON_OUTCOMES says)."""
    lines = [line.split(" ", 1) for path in paths for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return {node for outcome, node in lines if outcome == "passed"}


def run_tests(tree: Path, tests: list[str], verbose: bool, stop_first: bool = True) -> dict[str, str]:
    """Run ``tests`` in ``tree`` (its own package first on the path, subprocesses too); their outcomes."""
    report = tree / "junit.xml"
    report.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("TRT_ANON_REQUIRE_REHEARSAL", None)  # a skip must count as "not caught", never as a failure
    env.pop("TRT_ANON_OUTCOMES", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *tests]
    if stop_first:
        cmd.insert(4, "-x")
    r = subprocess.run(cmd, cwd=tree, env=env, capture_output=not verbose, text=True)
    outcomes = {}
    if report.exists():
        for case in ET.parse(report).iter("testcase"):
            node = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
            kinds = [child.tag for child in case]
            outcomes[node] = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
    if not outcomes and r.returncode not in (0, 1):
        raise SystemExit(f"pytest could not run {tests} (exit {r.returncode}):\n{r.stdout}{r.stderr}")
    return outcomes


def apply(tree: Path, mutant: Mutant) -> str | None:
    """Write the mutant into ``tree``; return the original text, or None where an edit no longer applies."""
    path = tree / mutant.path
    original = text = path.read_text(encoding="utf-8")
    for old, new in mutant.edits:
        if text.count(old) != 1:
            return None
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return original


def check(tree: Path, mutant: Mutant, verbose: bool) -> tuple[str, str, float]:
    """(verdict, the test that caught it or why not, seconds) for one mutant, applied and then reverted."""
    started = time.perf_counter()
    original = apply(tree, mutant)
    if original is None:
        return "no longer applies", f"{mutant.path}: its text is gone (update the mutant)", 0.0
    try:
        outcomes = run_tests(tree, list(mutant.tests), verbose)
    finally:
        (tree / mutant.path).write_text(original, encoding="utf-8")
    caught = [node for node, outcome in outcomes.items() if outcome in ("failure", "error")]
    seconds = time.perf_counter() - started
    if caught:
        return "caught", caught[0].split("::", 1)[1] if "::" in caught[0] else caught[0], seconds
    skipped = [node for node, outcome in outcomes.items() if outcome == "skipped"]
    return "SURVIVED", "skipped: " + ", ".join(skipped) if skipped else "every named test passed", seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only mutants whose name or property contains this")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at once, each in its own copy")
    ap.add_argument("-v", "--verbose", action="store_true", help="show pytest's output")
    ap.add_argument("--list", action="store_true", help="list the mutants and their tests")
    ap.add_argument("--passed", nargs="+", metavar="OUTCOMES",
                    help="outcome files of test runs on these same files (CI's passes): the named tests must be "
                         "listed there as passed, instead of being run unmutated first")
    args = ap.parse_args(argv)
    chosen = [x for x in MUTANTS if args.k.lower() in f"{x.name} {x.prop}".lower()]
    if args.list:
        for x in chosen:
            print(f"{x.prop:38} {x.name:58} {', '.join(t.split('::', 1)[1] for t in x.tests)}")
        return 0
    if not chosen:
        print(f"no mutant matches {args.k!r}")
        return 1
    started = time.perf_counter()
    files = tracked()
    trees = [scratch_copy(files) for _ in range(max(1, args.jobs))]
    try:
        failed = 0
        named = list(dict.fromkeys(t for x in chosen for t in x.tests))
        if args.passed:
            passed = passed_in(args.passed)
            bad = {t: "not passed in " + ", ".join(args.passed) for t in named if t not in passed}
        else:
            outcomes = run_tests(trees[0], named, args.verbose, stop_first=False)
            bad = {t: outcomes.get(t, "not run") for t in named if outcomes.get(t) != "passed"}
        for t, outcome in bad.items():
            print(f"unmutated, a named test did not pass: {t} ({outcome})")
        if bad:
            return 1
        how = "in the runs given" if args.passed else f"({time.perf_counter() - started:.0f} s)"
        print(f"unmutated: the {len(named)} named tests pass {how}")
        free = list(trees)
        with ThreadPoolExecutor(max_workers=len(trees)) as pool:
            def job(x: Mutant):
                tree = free.pop()
                try:
                    return check(tree, x, args.verbose)
                finally:
                    free.append(tree)

            results = list(pool.map(job, chosen))
        print("\n| property | planted bug | result | caught by | s |\n|---|---|---|---|---|")
        for x, (verdict, by, seconds) in zip(chosen, results):
            failed += verdict != "caught"
            print(f"| {x.prop} | {x.name} | {verdict} | `{by}` | {seconds:.0f} |")
        total = time.perf_counter() - started
        print(f"\n{len(chosen) - failed} of {len(chosen)} planted bugs caught; {total / 60:.1f} min "
              f"({os.cpu_count()} cores, {args.jobs} at once)")
        return 1 if failed else 0
    finally:
        for tree in trees:
            shutil.rmtree(tree, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
