"""Pascal VOC imports (agkit.data.annotation_voc): clear errors and safe XML.

Every import refuses (a ValueError naming the file and the annotation or line) or warns
(with the count and the file) on an annotation it cannot turn into a non-empty mask.
"""

import pytest

from agkit.data.annotation_voc import read_voc


# ------------------------------------------------------------- medium: clear VOC errors
def voc(body: str, size: str = "<size><width>10</width><height>8</height></size>") -> str:
    return f"<annotation>{size}<object><name>fracture</name>{body}</object></annotation>"


def test_voc_without_ymax_names_file_and_box(tmp_path):
    path = tmp_path / "img.xml"
    path.write_text(voc("<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax></bndbox>"))
    with pytest.raises(ValueError, match=r"img\.xml: <bndbox> 1 has no \['ymax'\]"):
        read_voc(path)


@pytest.mark.parametrize("value", ["nan", "inf", "four"])
def test_voc_nan_or_text_coordinates_name_file_and_box(tmp_path, value):
    box = f"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>{value}</xmax><ymax>4</ymax></bndbox>"
    path = tmp_path / "img.xml"
    path.write_text(voc(box))
    with pytest.raises(ValueError, match=r"img\.xml: <bndbox> 1: the box must be"):
        read_voc(path)


def test_voc_broken_xml_names_file_and_line(tmp_path):
    path = tmp_path / "img.xml"
    path.write_text("<annotation>\n<size><width>10</width>\n</annotation>\n")
    with pytest.raises(ValueError, match=r"img\.xml:3: not well-formed XML"):
        read_voc(path)


def test_voc_box_outside_the_image_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "img.xml"
    good = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>3</ymax></bndbox>"
    outside = "<bndbox><xmin>12</xmin><ymin>1</ymin><xmax>14</xmax><ymax>3</ymax></bndbox>"
    path.write_text(voc(good + outside))
    with pytest.warns(UserWarning, match=r"img\.xml: 1 annotation\(s\) draw no pixel.*<bndbox> 2"):
        shapes = read_voc(path)
    assert shapes.boxes == [(1, 1, 4, 3)] and shapes.rasterize((8, 10)).sum() == 3 * 2


# -------------------------------------------------------------- security: safe XML
def test_voc_xxe_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("42")
    path = tmp_path / "img.xml"
    path.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        + voc("<bndbox><xmin>&xxe;</xmin><ymin>1</ymin><xmax>50</xmax><ymax>4</ymax></bndbox>")
    )
    with pytest.raises(ValueError, match=r"img\.xml: refused \(EntitiesForbidden.*XXE"):
        read_voc(path)


def test_voc_billion_laughs_is_refused(tmp_path):
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{k} "{f"&lol{k - 1};" * 10}">' for k in range(1, 10)
    )
    path = tmp_path / "img.xml"
    path.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE annotation [{entities}]>\n' + voc("<name>&lol9;</name>")
    )
    with pytest.raises(ValueError, match=r"img\.xml: refused \(EntitiesForbidden.*billion"):
        read_voc(path)
