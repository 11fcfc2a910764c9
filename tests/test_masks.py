"""AttentionMapRecorder and AttentionMaskExtract in the real host: masks, heat maps, the maps themselves."""

import pytest
import torch

from devtools.graphs import add_mask_extract, edit_graph, read_pngs

SOURCE = "a red cat riding a bicycle"
TARGET = "a red cat riding a car"
LONG = TARGET + ", " + ", ".join(["in a sunny green park with tall old trees"] * 9)
"""A target over 77 tokens: two chunks, so the source's keys are repeated in the batch."""


def mask_graph(
    words: str = "cat, bicycle, car",
    threshold: float = 0.8,
    edit: str | None = "AttentionReplace",
    record: bool = True,
    width: int = 256,
    height: int = 192,
    family: str = "sd15",
    decode: bool = False,
) -> dict:
    """Loader -> PromptPair -> [edit] -> [AttentionMapRecorder] -> KSampler -> AttentionMaskExtract -> previews."""
    chain = [("AttentionMapRecorder", {})] if record else []
    graph = edit_graph(family=family, source=SOURCE, target=TARGET, edit=edit, chain=chain, width=width, height=height)
    model = ["chain0", 0] if record else (["edit", 0] if edit else ["model", 0])
    add_mask_extract(graph, model, words, threshold)
    if decode:
        graph["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["model", 2]}}
        graph["extract"]["inputs"]["images"] = ["decode", 0]
    graph["heat_preview"] = {"class_type": "PreviewImage", "inputs": {"images": ["extract", 1]}}
    return graph


def panels_and_labels(heat: torch.Tensor, height: int, words: int) -> tuple[list, list]:
    """Splits one heat-map image [H + label, words * W, 3] into its panels and label cells."""
    width = heat.shape[1] // words
    cells = [heat[:, i * width : (i + 1) * width] for i in range(words)]
    return [c[:height] for c in cells], [c[height:] for c in cells]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("width, height", [(256, 192), (192, 320)])
def test_masks_and_heat_maps_have_the_image_size(comfy, family, width, height):
    words = ["cat", "bicycle", "car"]
    outputs = comfy.run_graph(mask_graph(", ".join(words), family=family, width=width, height=height))
    masks = read_pngs(outputs["mask_preview"]["images"])
    assert masks.shape[:3] == (2, height, width)
    heat = read_pngs(outputs["heat_preview"]["images"])
    assert heat.shape[0] == 2 and heat.shape[2] == len(words) * width and heat.shape[1] > height
    for row in heat:
        panels, labels = panels_and_labels(row, height, len(words))
        for panel, label in zip(panels, labels, strict=True):
            assert panel.float().std() > 0  # a map, not a flat fill
            assert (label < 100).any() and (label > 200).any()  # dark text on white
    (text,) = outputs["extract"]["text"]
    assert "source" in text and "target 1" in text


def test_each_row_unites_the_words_of_its_own_prompt(comfy):
    outputs = comfy.run_graph(mask_graph("bicycle, car", threshold=0.85))
    masks = read_pngs(outputs["mask_preview"]["images"])[..., 0] > 127
    alone_outputs = comfy.run_graph(mask_graph("bicycle", threshold=0.85))
    alone = read_pngs(alone_outputs["mask_preview"]["images"])[..., 0] > 127
    assert torch.equal(masks[0], alone[0])  # the source has no "car"
    assert not alone[1].any()  # the target has no "bicycle": an empty mask
    assert masks[1].any() and not masks[1].all()
    (text,) = alone_outputs["extract"]["text"]
    assert "target 1: EMPTY" in text


def test_heat_maps_over_the_decoded_images(comfy):
    """With `images` each panel is half heat map, half image (maps.heat_panels): every overlay pixel is
    the mean of the plain panel's and the image's. PreviewImage truncates to 8 bits, so the overlay's
    value lies in [mean - 0.5, mean + 1) of the two truncated values: within 1 level."""
    words = ["cat", "car"]
    graph = mask_graph(", ".join(words), decode=True)
    graph["image_preview"] = {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}}
    outputs = comfy.run_graph(graph)
    overlay = read_pngs(outputs["heat_preview"]["images"]).float()
    images = read_pngs(outputs["image_preview"]["images"]).float()
    plain = read_pngs(comfy.run_graph(mask_graph(", ".join(words)))["heat_preview"]["images"]).float()
    height = images.shape[1]
    for row in range(2):
        over_panels, over_labels = panels_and_labels(overlay[row], height, len(words))
        plain_panels, plain_labels = panels_and_labels(plain[row], height, len(words))
        for over, heat, over_label, plain_label in zip(
            over_panels, plain_panels, over_labels, plain_labels, strict=True
        ):
            assert ((over - (heat + images[row]) / 2).abs() <= 1).all()
            assert torch.equal(over_label, plain_label)  # the labels are not overlaid


@pytest.mark.parametrize("threshold, word", [(0.0, "FULL"), (1.0, "EMPTY")])
def test_an_empty_or_full_mask_is_reported(comfy, threshold, word):
    (text,) = comfy.run_graph(mask_graph("cat", threshold=threshold))["extract"]["text"]
    assert text.count(word) == 2, text


@pytest.mark.parametrize("threshold, flag", [(0.0, "full"), (1.0, "empty")])
def test_the_report_sends_each_masks_share_and_flags_as_data(comfy, threshold, flag):
    """The editor marks a row from these numbers, not from the wording of the text."""
    rows = comfy.run_graph(mask_graph("cat", threshold=threshold))["extract"]["p2p_masks"]
    assert [row["row"] for row in rows] == ["source", "target 1"]
    assert all(row[flag] and row["words"] == ["cat"] for row in rows)
    assert all(row["share"] == (1.0 if flag == "full" else 0.0) for row in rows)
    (middle,) = {row["empty"] or row["full"] for row in comfy.run_graph(mask_graph("cat"))["extract"]["p2p_masks"]}
    assert not middle


def test_a_resolution_is_chosen_by_its_id_or_by_its_former_label(comfy):
    """Workflows saved with the option's label (before the ids) run as with the id."""

    def masks(resolution: str) -> torch.Tensor:
        graph = mask_graph("cat")
        graph["chain0"]["inputs"]["resolution"] = resolution
        return read_pngs(comfy.run_graph(graph)["mask_preview"]["images"])

    by_id = masks("1/16")
    assert torch.equal(masks("1/16 of the image (32x32 at 512 px)"), by_id)
    assert not torch.equal(masks("1/32"), by_id)
    with pytest.raises(comfy.GraphError) as error:
        masks("1/16 of the picture")
    refused = str(error.value.details)  # a validation error: the node's reason is in its node errors
    assert "resolution" in refused and "1/32" in refused


def test_maps_of_a_plain_generation(comfy):
    outputs = comfy.run_graph(mask_graph("cat", edit=None))
    assert len(read_pngs(outputs["mask_preview"]["images"])) == 2


def test_a_missing_word_is_named_with_the_prompts_words(comfy):
    with pytest.raises(comfy.GraphError) as error:
        comfy.run_graph(mask_graph("cat, dog"))
    assert "'dog'" in error.value.message and "riding" in error.value.message


def test_a_model_that_records_nothing_says_what_to_add(comfy):
    with pytest.raises(comfy.GraphError) as error:
        comfy.run_graph(mask_graph(record=False))
    assert "Attention Map Recorder" in error.value.message


def test_samples_the_model_did_not_sample_are_refused(comfy):
    graph = mask_graph()
    graph["extract"]["inputs"]["samples"] = ["latent", 0]
    with pytest.raises(comfy.GraphError) as error:
        comfy.run_graph(graph)
    assert "never sampled these samples" in error.value.message


class ReferenceMaps:
    """An observer computing the averaged maps by explicit softmax (p2p_core.attention.attention_maps)."""

    def __init__(self, attention_maps, prompts, queries: int) -> None:
        self.attention_maps = attention_maps
        self.prompts = prompts
        self.queries = queries
        self.total = None
        self.calls = 0

    def observe_cross(self, call):
        q, k, heads, chunk_starts = call.q, call.k, call.heads, call.chunk_starts
        if q.shape[1] != self.queries:
            return
        rows = self.prompts.rows
        for start in chunk_starts:
            maps = self.attention_maps(q[start : start + rows], k[start : start + rows], heads).mean(1)
            per_position = torch.zeros(rows, max(p.length for p in self.prompts.all), self.queries)
            for row, prompt in enumerate(self.prompts.all):
                for key in range(k.shape[1]):
                    per_position[row, key % prompt.length] += maps[row, :, key]
            self.total = per_position if self.total is None else self.total + per_position
            self.calls += 1


@pytest.mark.parametrize("family, target", [("sd15", TARGET), ("sd15", LONG), ("sdxl", TARGET)])
def test_recorded_maps_equal_the_explicit_softmax_reference(comfy, family, target):
    import nodes

    recording = comfy.pack("host.recording")
    model, clip, _ = comfy.tiny_model(family)
    cond, prompts = comfy.pack("host.prompts").encode_prompts(clip, SOURCE, [target])
    negative = nodes.CLIPTextEncode().encode(clip, "")[0]
    recorder = comfy.pack("p2p_core.maps").MapRecorder(prompts, 4)
    patched = recording.attach_recorder(model, prompts, recorder)
    height, width = 24, 32  # latent of 192 x 256 px; layers at latent / 4 have 6 x 8 queries
    reference = ReferenceMaps(comfy.pack("p2p_core.attention").attention_maps, prompts, 6 * 8)
    patched = comfy.pack("host.edit").add_observer(patched, prompts, reference)
    (out,) = nodes.common_ksampler(
        patched, 3, 3, 5.0, "euler", "normal", cond, negative, {"samples": torch.zeros(1, 4, height, width)}
    )
    (record,) = recorder.records
    assert record.maps.shape == (2, max(p.length for p in prompts.all), 6, 8)
    expected = (reference.total / reference.calls).reshape(record.maps.shape)
    assert torch.allclose(record.maps, expected, atol=1e-5, rtol=0)
    assert record.maps.std() > 0
    result = comfy.pack("nodes.attention_maps").AttentionMaskExtract.execute(patched, out, prompts, "cat, car", 0.8)
    mask, heat = result.args
    assert mask.shape == (2, height * 8, width * 8)
    assert heat.shape[0] == 2 and heat.shape[2] == 2 * width * 8
