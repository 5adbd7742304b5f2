import pytest

from efm_seg.data.raw import DatasetValidationError, Layout, PathTemplate, pair_files


def layout(images, masks, group_by=None):
    return Layout.from_params({"images": images, "masks": masks, "group_by": group_by})


def test_template_fields_and_wildcards():
    template = PathTemplate.compile("**/{tile}/images/{id}_sat.*", "t")
    assert template.fields == ("tile", "id")
    assert template.match("a/b/Tile 3/images/x_1_sat.jpg") == {"tile": "Tile 3", "id": "x_1"}
    assert template.match("Tile 3/images/x_1_sat.jpg") == {"tile": "Tile 3", "id": "x_1"}
    assert template.match("Tile 3/masks/x_1_sat.jpg") is None
    # Literal dots and brackets are not regex syntax.
    assert PathTemplate.compile("im[1]/{id}.png", "t").match("im[1]/a.png") == {"id": "a"}
    assert PathTemplate.compile("im[1]/{id}.png", "t").match("im1/a.png") is None


@pytest.mark.parametrize(
    ("images", "masks", "group_by", "message"),
    [
        ("images/x.jpg", "masks/{id}.png", None, "no \\{id\\}"),
        ("images/{id}.jpg", "{tile}/masks/{id}.png", None, "same fields"),
        ("images/{id}.jpg", "masks/{id}.png", "tile", "group_by"),
        ("{id}/{id}.jpg", "masks/{id}.png", None, "twice"),
        ("", "masks/{id}.png", None, "ingestion.images"),
    ],
)
def test_bad_templates_are_named(images, masks, group_by, message):
    with pytest.raises(DatasetValidationError, match=message):
        layout(images, masks, group_by)


def test_same_stem_pairing_with_groups_keeps_ids_apart():
    files = [
        "Tile 1/images/image_part_001.jpg",
        "Tile 1/masks/image_part_001.png",
        "Tile 2/images/image_part_001.jpg",
        "Tile 2/masks/image_part_001.png",
        "notes.txt",
    ]
    result = pair_files(files, layout("{tile}/images/{id}.jpg", "{tile}/masks/{id}.png", "tile"))
    assert not result.problems
    assert [(p.sample_id, p.group) for p in result.pairs] == [
        ("Tile_1__image_part_001", "Tile 1"),
        ("Tile_2__image_part_001", "Tile 2"),
    ]
    assert result.pairs[1].mask == "Tile 2/masks/image_part_001.png"
    assert result.unmatched == ["notes.txt"]


def test_suffix_templates_pair_and_default_group_is_the_image():
    files = ["img/10_sat.jpg", "img/10_mask.png", "img/11_sat.jpg", "img/11_mask.png"]
    result = pair_files(files, layout("img/{id}_sat.jpg", "img/{id}_mask.png"))
    assert [(p.sample_id, p.group, p.mask) for p in result.pairs] == [
        ("10", "10", "img/10_mask.png"),
        ("11", "11", "img/11_mask.png"),
    ]


def test_lonely_and_duplicate_files_are_reported():
    files = [
        "images/a.jpg", "masks/a.png",
        "images/b.jpg",                     # no mask
        "masks/c.png",                      # no image
        "images/d.jpg", "images/d.png", "masks/d.png",  # two images claim id d
    ]  # fmt: skip
    result = pair_files(files, layout("images/{id}.*", "masks/{id}.png"))
    text = "\n".join(result.problems)
    assert "image(s) with no mask" in text and "'images/b.jpg'" in text
    assert "mask(s) with no image" in text and "'masks/c.png'" in text
    assert "duplicate id 'd'" in text and "'images/d.png'" in text
    assert [p.sample_id for p in result.pairs] == ["a"]


def test_files_matching_both_templates_are_a_problem():
    result = pair_files(["x/a.png"], layout("x/{id}.png", "x/{id}.*"))
    assert any("match both" in p for p in result.problems)
