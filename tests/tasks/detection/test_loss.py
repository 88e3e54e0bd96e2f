"""YOLO losses against their formulas computed by hand on tiny grids.

YOLOv1 set-up: S = 2, B = 2, C = 3 on a 64-pixel input (cells of 32 px); raw logits 0 give sigmoid 0.5, so an
all-zero box is centred in its cell with √w = √h = 0.5 (16 px wide), confidence 0.5, and class
probabilities 1/3.
"""

import math

import pytest
import torch

from vision_research.errors import ConfigError
from vision_research.tasks.detection import YoloAnchorLoss, YoloV1Loss, flatten_targets

S, B, C, SIZE = 2, 2, 3, 64
KEYS = {"loss", "loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_cls"}


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def target(boxes, labels, crowd=None) -> dict:
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    crowd = torch.zeros(len(boxes), dtype=torch.bool) if crowd is None else torch.tensor(crowd)
    return {"boxes": boxes, "labels": torch.tensor(labels, dtype=torch.int64), "iscrowd": crowd}


def v1_raw(n: int = 1) -> torch.Tensor:
    return torch.zeros(n, S, S, 5 * B + C)


def v1_loss(raw, targets, **options) -> dict:
    return YoloV1Loss(C, grid_size=S, num_boxes=B, image_size=SIZE, **options)(raw, targets)


def assert_terms(out: dict, **expected: float) -> None:
    assert set(out) == KEYS
    for name, value in expected.items():
        assert out[f"loss_{name}"].item() == pytest.approx(value, rel=1e-6, abs=1e-6), name
    terms = sum(out[k] for k in KEYS - {"loss"})
    assert out["loss"].item() == pytest.approx(terms.item(), rel=1e-6, abs=1e-6)


# An object filling cell (0, 0) exactly: centre (16, 16), 32×32 px, i.e. offset (0.5, 0.5) and w = h = 0.5.
CELL_BOX = [0, 0, 32, 32]
HALF = logit(math.sqrt(0.5))  # t_w with sigmoid(t_w) = √0.5: the predicted box is 32 px wide (IoU 1 with CELL_BOX)


def test_responsible_box_is_the_higher_iou_one_and_moves_when_the_boxes_swap():
    raw = v1_raw()
    raw[0, 0, 0, 5 + 2 : 5 + 4] = HALF  # box 1: 32×32, IoU 1; box 0: 16×16, IoU 16²/32² = 0.25
    raw[0, 0, 0, 5 + 4] = logit(0.8)  # box 1's confidence 0.8; box 0's stays 0.5
    out = v1_loss(raw, [target(CELL_BOX, [0])], confidence_target="one")
    # Box 1 responsible: obj (0.8 − 1)²; no-object: box 0 (0.5²) + 3 empty cells × 2 boxes × 0.5², times 0.5.
    assert_terms(out, xy=0.0, wh=0.0, obj=0.2**2, noobj=0.5 * (0.25 + 6 * 0.25))

    swapped = v1_raw()
    swapped[0, 0, 0, 2:4] = HALF  # now box 0 has IoU 1, box 1 IoU 0.25; the confidences stay where they were
    swapped[0, 0, 0, 5 + 4] = logit(0.8)
    out = v1_loss(swapped, [target(CELL_BOX, [0])], confidence_target="one")
    assert_terms(out, xy=0.0, wh=0.0, obj=0.5**2, noobj=0.5 * (0.8**2 + 6 * 0.25))


def test_non_responsible_box_of_an_object_cell_counts_as_no_object():
    raw = v1_raw()
    raw[0, 0, 0, 2:4] = HALF  # box 0 responsible (IoU 1 vs 0.25)
    raw[0, 0, 0, 5 + 4] = logit(0.9)  # the other box of the object's cell
    out = v1_loss(raw, [target(CELL_BOX, [0])])
    assert_terms(out, noobj=0.5 * (0.9**2 + 6 * 0.5**2))


def test_confidence_target_is_the_detached_iou_by_default():
    raw = v1_raw().requires_grad_()
    out = v1_loss(raw, [target(CELL_BOX, [0])])
    # Both boxes 16×16 at the object's centre: IoU 0.25 each, the tie goes to box 0; (0.5 − 0.25)².
    assert_terms(out, obj=(0.5 - 0.25) ** 2)
    out["loss_obj"].backward()
    assert raw.grad[0, 0, 0, 4] != 0 and raw.grad[0, 0, 0, :4].abs().sum() == 0  # no gradient through Ĉ = IoU
    assert_terms(v1_loss(v1_raw(), [target(CELL_BOX, [0])], confidence_target="one"), obj=(0.5 - 1) ** 2)


def test_xy_term_compares_the_sigmoid_offsets_with_the_centre_offset_in_the_cell():
    # Centre (40, 8): cell column 1, row 0, offset (40/32 − 1, 8/32) = (0.25, 0.25); predictions 0.5.
    out = v1_loss(v1_raw(), [target([32, 0, 48, 16], [0])])
    assert_terms(out, xy=5.0 * ((0.5 - 0.25) ** 2 + (0.5 - 0.25) ** 2))


def test_wh_term_compares_square_roots_of_the_image_fractions():
    # 23.04 × 10.24 px on 64 px: w = 0.36, h = 0.16, so √w = 0.6, √h = 0.4; sigmoid(0) = 0.5 is the predicted √w.
    box = [16 - 11.52, 16 - 5.12, 16 + 11.52, 16 + 5.12]
    out = v1_loss(v1_raw(), [target(box, [0])])
    assert_terms(out, wh=5.0 * ((0.5 - 0.6) ** 2 + (0.5 - 0.4) ** 2))
    raw = v1_raw()
    raw[0, 0, 0, [2, 7]] = logit(0.6)  # both boxes predict √w = 0.6: only the height error is left
    assert_terms(v1_loss(raw, [target(box, [0])]), wh=5.0 * (0.5 - 0.4) ** 2)


def test_lambdas_scale_their_terms_exactly():
    raw = torch.randn(1, S, S, 5 * B + C, generator=torch.Generator().manual_seed(0))
    targets = [target([[3, 5, 29, 40], [40, 36, 60, 62]], [0, 2])]
    paper = v1_loss(raw, targets)
    plain = v1_loss(raw, targets, lambda_coord=1.0, lambda_noobj=1.0)
    for name, factor in {"xy": 5.0, "wh": 5.0, "noobj": 0.5, "obj": 1.0, "cls": 1.0}.items():
        torch.testing.assert_close(paper[f"loss_{name}"], factor * plain[f"loss_{name}"])
    other = v1_loss(raw, targets, lambda_coord=2.0, lambda_noobj=3.0)
    torch.testing.assert_close(other["loss_xy"], 2.0 * plain["loss_xy"])
    torch.testing.assert_close(other["loss_noobj"], 3.0 * plain["loss_noobj"])


def test_class_term_only_in_cells_with_an_object():
    targets = [target([32, 0, 64, 32], [2])]  # cell (row 0, column 1)
    # Uniform probabilities 1/3 against one-hot (0, 0, 1): (1/3)² + (1/3)² + (2/3)² = 2/3.
    assert_terms(v1_loss(v1_raw(), targets), cls=2 / 3)
    raw = torch.randn(1, S, S, 5 * B + C, generator=torch.Generator().manual_seed(1))
    raw[0, 0, 1, 5 * B :] = torch.tensor([0.0, 0.0, math.log(2)])  # probabilities (1/4, 1/4, 1/2)
    assert_terms(v1_loss(raw, targets), cls=(1 / 4) ** 2 + (1 / 4) ** 2 + (1 / 2) ** 2)  # other cells ignored


def test_image_without_objects_gives_only_the_no_object_term():
    out = v1_loss(v1_raw(), [target([], [])])
    assert_terms(out, xy=0.0, wh=0.0, obj=0.0, cls=0.0, noobj=0.5 * S * S * B * 0.5**2)


def test_two_objects_in_one_cell_keep_the_largest():
    small, large = [4, 4, 16, 16], [0, 0, 32, 32]  # both centred in cell (0, 0)
    raw = torch.randn(1, S, S, 5 * B + C, generator=torch.Generator().manual_seed(2))
    alone = v1_loss(raw, [target(large, [1])])
    for pair in ([target([small, large], [0, 1])], [target([large, small], [1, 0])]):
        out = v1_loss(raw, pair)
        for key in KEYS:
            torch.testing.assert_close(out[key], alone[key])


def test_crowd_boxes_are_ignored():
    raw = torch.randn(1, S, S, 5 * B + C, generator=torch.Generator().manual_seed(3))
    with_crowd = v1_loss(raw, [target([CELL_BOX, [36, 36, 60, 60]], [0, 1], crowd=[False, True])])
    alone = v1_loss(raw, [target(CELL_BOX, [0])])
    for key in KEYS:
        torch.testing.assert_close(with_crowd[key], alone[key])


def test_fp32_and_finite_under_bf16_autocast():
    raw = torch.randn(2, S, S, 5 * B + C, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = v1_loss(raw, [target(CELL_BOX, [0]), target([], [])])
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert raw.grad.dtype == torch.bfloat16 and torch.isfinite(raw.grad.float()).all()


def test_gradient_flows_to_the_raw_tensor():
    raw = torch.randn(1, S, S, 5 * B + C, requires_grad=True)
    v1_loss(raw, [target([[3, 5, 29, 40], [40, 36, 60, 62]], [0, 2])])["loss"].backward()
    assert torch.isfinite(raw.grad).all() and raw.grad[0, 0, 0].abs().sum() > 0
    assert raw.grad[..., 4].abs().min() > 0  # every confidence is in the obj or the no-object term


def test_batch_of_two_is_the_mean_of_the_singles():
    raw = torch.randn(2, S, S, 5 * B + C, generator=torch.Generator().manual_seed(4))
    targets = [target([[3, 5, 29, 40], [40, 36, 60, 62]], [0, 2]), target([[10, 30, 50, 60]], [1])]
    batch = v1_loss(raw, targets)
    singles = [v1_loss(raw[i : i + 1], targets[i : i + 1]) for i in range(2)]
    for key in KEYS:
        torch.testing.assert_close(batch[key], (singles[0][key] + singles[1][key]) / 2)


def test_bad_options_and_shapes_are_errors():
    with pytest.raises(ConfigError, match="confidence_target"):
        YoloV1Loss(C, confidence_target="ones")
    with pytest.raises(ValueError, match="shape"):
        v1_loss(torch.zeros(1, S, S, 5 * B + C + 1), [target([], [])])


# Anchor loss: two scales on a 64-pixel input, strides 8 and 16 (8×8 and 4×4 grids), two anchors each.
ANCHORS = [[(10, 10), (30, 30)], [(60, 60), (120, 120)]]
STRIDES = [8, 16]
NUM_PREDICTIONS = 2 * 8 * 8 + 2 * 4 * 4  # 160


def anchor_raws(n: int = 1, num_classes: int = 2) -> list[torch.Tensor]:
    return [torch.zeros(n, 2, 8, 8, 5 + num_classes), torch.zeros(n, 2, 4, 4, 5 + num_classes)]


def test_positive_goes_to_the_best_shape_anchor():
    # 28×32 centred (20, 20): shape IoUs 0.11, 0.88, 0.25, 0.06 → scale 0, anchor (30, 30), cell (2, 2).
    # 50×56 centred (36, 36): shape IoUs 0.04, 0.32, 0.78, 0.19 → scale 1, anchor (60, 60), cell (2, 2).
    targets = [target([[6, 4, 34, 36], [11, 8, 61, 64]], [1, 0])]
    loss = YoloAnchorLoss(2, ANCHORS, STRIDES, ignore_iou=1.0)  # no prediction ignored
    fine, coarse = loss.assign(*flatten_targets(targets, "cpu"), [(8, 8), (4, 4)])
    assert (fine.anchor.tolist(), fine.row.tolist(), fine.col.tolist(), fine.labels.tolist()) == ([1], [2], [2], [1])
    assert (coarse.anchor.tolist(), coarse.row.tolist(), coarse.col.tolist()) == ([0], [2], [2])
    torch.testing.assert_close(fine.xy, torch.tensor([[0.5, 0.5]]))  # 20 / 8 − 2
    torch.testing.assert_close(coarse.xy, torch.tensor([[0.25, 0.25]]))  # 36 / 16 − 2
    torch.testing.assert_close(coarse.wh, torch.tensor([[math.log(50 / 60), math.log(56 / 60)]]))

    out = loss(anchor_raws(), targets)
    log2 = math.log(2)  # BCE of a logit 0 against 0 or 1
    assert_terms(
        out,
        xy=5.0 * (0.0 + 2 * 0.25**2),
        wh=5.0 * (math.log(28 / 30) ** 2 + math.log(32 / 30) ** 2 + math.log(50 / 60) ** 2 + math.log(56 / 60) ** 2),
        obj=2 * log2,
        cls=2 * 2 * log2,
        noobj=0.5 * (NUM_PREDICTIONS - 2) * log2,
    )


def test_two_objects_on_one_anchor_keep_the_largest():
    targets = [target([[6, 6, 34, 34], [5, 4, 37, 34]], [0, 1])]  # 28×28 and 32×30, both (30, 30) at cell (2, 2)
    fine, coarse = YoloAnchorLoss(2, ANCHORS, STRIDES).assign(*flatten_targets(targets, "cpu"), [(8, 8), (4, 4)])
    assert fine.labels.tolist() == [1] and len(coarse.labels) == 0
    torch.testing.assert_close(fine.wh, torch.tensor([[math.log(32 / 30), 0.0]]))


def test_ignore_rule_removes_the_no_object_penalty_of_well_placed_predictions():
    # 30×30 centred (20, 20) is exactly the decoded box of anchor (30, 30) at cell (2, 2) (the positive). The same
    # anchor one cell left/right/up/down is shifted by 8 px: IoU 22·30 / (1800 − 660) = 0.58 > 0.5 → 4 ignored.
    # Everything else stays below 0.5 (diagonal neighbours 0.37, the 60×60 anchor around it 0.25).
    targets = [target([5, 5, 35, 35], [0])]
    log2 = math.log(2)
    never = YoloAnchorLoss(2, ANCHORS, STRIDES, ignore_iou=1.0)(anchor_raws(), targets)
    paper = YoloAnchorLoss(2, ANCHORS, STRIDES, ignore_iou=0.5)(anchor_raws(), targets)
    assert_terms(never, noobj=0.5 * (NUM_PREDICTIONS - 1) * log2)
    assert_terms(paper, noobj=0.5 * (NUM_PREDICTIONS - 1 - 4) * log2)
    for key in KEYS - {"loss", "loss_noobj"}:
        torch.testing.assert_close(paper[key], never[key])
    raws = anchor_raws()
    raws[0][0, 1, 2, 3, 4] = 5.0  # a confident right-hand neighbour: ignored, so no penalty
    torch.testing.assert_close(YoloAnchorLoss(2, ANCHORS, STRIDES)(raws, targets)["loss_noobj"], paper["loss_noobj"])


def test_anchor_loss_is_fp32_and_finite_under_bf16_autocast():
    generator = torch.Generator().manual_seed(5)
    raws = [(torch.randn(r.shape, generator=generator) * 3).bfloat16().requires_grad_() for r in anchor_raws(2)]
    targets = [target([[6, 4, 34, 36], [11, 8, 61, 64]], [1, 0]), target([], [])]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = YoloAnchorLoss(2, ANCHORS, STRIDES)(raws, targets)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert all(torch.isfinite(r.grad.float()).all() for r in raws)


# --- IoU-family box losses (task.loss.box_loss), against the papers' formulas written out here ----------------


def _iou_family(pred: list[float], truth: list[float]) -> dict[str, float]:
    """IoU, GIoU (Rezatofighi et al. 2019), DIoU and CIoU (Zheng et al. 2020, eqs. 6-11) of two xyxy boxes."""
    (x1, y1, x2, y2), (u1, v1, u2, v2) = pred, truth
    inter = max(0.0, min(x2, u2) - max(x1, u1)) * max(0.0, min(y2, v2) - max(y1, v1))
    union = (x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - inter
    iou = inter / union
    enclosing_w, enclosing_h = max(x2, u2) - min(x1, u1), max(y2, v2) - min(y1, v1)
    giou = iou - (enclosing_w * enclosing_h - union) / (enclosing_w * enclosing_h)
    centre_distance = ((x1 + x2 - u1 - u2) / 2) ** 2 + ((y1 + y2 - v1 - v2) / 2) ** 2
    diou = iou - centre_distance / (enclosing_w**2 + enclosing_h**2)
    v = 4 / math.pi**2 * (math.atan((u2 - u1) / (v2 - v1)) - math.atan((x2 - x1) / (y2 - y1))) ** 2
    alpha = v / (1 - iou + v)
    return {"giou": giou, "diou": diou, "ciou": diou - alpha * v}


@pytest.mark.parametrize("box_loss", ["giou", "diou", "ciou"])
def test_iou_box_loss_is_one_minus_the_papers_iou_of_the_decoded_positives(box_loss):
    # The two positives of test_positive_goes_to_the_best_shape_anchor; with zero raw outputs each predicts its
    # anchor at its cell's centre: 30×30 at (20, 20) on the stride-8 grid, 60×60 at (40, 40) on the stride-16 one.
    targets = [target([[6, 4, 34, 36], [11, 8, 61, 64]], [1, 0])]
    predicted = [[5.0, 5.0, 35.0, 35.0], [10.0, 10.0, 70.0, 70.0]]
    expected = sum(
        1 - _iou_family(p, t)[box_loss] for p, t in zip(predicted, targets[0]["boxes"].tolist(), strict=False)
    )
    out = YoloAnchorLoss(2, ANCHORS, STRIDES, ignore_iou=1.0, box_loss=box_loss, lambda_box=3.0)(anchor_raws(), targets)
    mse = YoloAnchorLoss(2, ANCHORS, STRIDES, ignore_iou=1.0)(anchor_raws(), targets)
    assert set(out) == KEYS - {"loss_xy", "loss_wh"} | {"loss_box"}
    assert out["loss_box"].item() == pytest.approx(3.0 * expected, rel=1e-5)
    for key in ("loss_obj", "loss_noobj", "loss_cls"):  # the other terms are the paper's
        torch.testing.assert_close(out[key], mse[key])
    assert out["loss"].item() == pytest.approx(sum(out[k].item() for k in out if k != "loss"), rel=1e-6)


def test_iou_box_loss_is_finite_with_gradients_for_wild_outputs_and_empty_images():
    generator = torch.Generator().manual_seed(5)
    raws = [(torch.randn(r.shape, generator=generator) * 20).requires_grad_() for r in anchor_raws(2)]
    targets = [target([[6, 4, 34, 36], [11, 8, 61, 64]], [1, 0]), target([], [])]
    out = YoloAnchorLoss(2, ANCHORS, STRIDES, box_loss="ciou")(raws, targets)
    out["loss"].backward()
    assert torch.isfinite(out["loss_box"]) and all(torch.isfinite(r.grad).all() for r in raws)
    with pytest.raises(ConfigError, match="task.loss.box_loss must be one of mse, giou, diou, ciou; got 'iou'"):
        YoloAnchorLoss(2, ANCHORS, STRIDES, box_loss="iou")


def _positives(scale) -> list[tuple[int, int, int, int]]:
    """(label, anchor, row, column) of each positive of one scale."""
    return list(zip(*(t.tolist() for t in (scale.labels, scale.anchor, scale.row, scale.col)), strict=True))


def test_assign_iou_adds_every_anchor_whose_shape_matches_well_enough():
    # Shape IoUs with the anchors (10, 30 | 60, 120): 28×32 → 0.11, 0.88, 0.25, 0.06; 50×56 → 0.04, 0.32, 0.78, 0.19.
    # Above 0.2: the first object also on (60, 60), the second also on (30, 30), each at its centre's cell.
    targets = [target([[6, 4, 34, 36], [11, 8, 61, 64]], [1, 0])]
    loss = YoloAnchorLoss(2, ANCHORS, STRIDES, assign_iou=0.2)
    fine, coarse = loss.assign(*flatten_targets(targets, "cpu"), [(8, 8), (4, 4)])
    assert sorted(
        zip(fine.labels.tolist(), fine.anchor.tolist(), fine.row.tolist(), fine.col.tolist(), strict=False)
    ) == [
        (0, 1, 4, 4),  # centre (36, 36) / 8
        (1, 1, 2, 2),
    ]
    assert sorted(
        zip(coarse.labels.tolist(), coarse.anchor.tolist(), coarse.row.tolist(), coarse.col.tolist(), strict=False)
    ) == [
        (0, 0, 2, 2),
        (1, 0, 1, 1),  # centre (20, 20) / 16
    ]
    only_best = YoloAnchorLoss(2, ANCHORS, STRIDES).assign(*flatten_targets(targets, "cpu"), [(8, 8), (4, 4)])
    assert [len(scale.labels) for scale in only_best] == [1, 1]
    with pytest.raises(ConfigError, match=r"task.loss.assign_iou must be in \(0, 1\)"):
        YoloAnchorLoss(2, ANCHORS, STRIDES, assign_iou=1.5)
