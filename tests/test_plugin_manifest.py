import numpy as np
import npe2

from napari_odise._sample_data import SAMPLES, load_sample_image


def test_manifest_is_valid_and_registered():
    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-odise")
    sample_keys = {s.key for s in manifest.contributions.sample_data}
    assert sample_keys == set(SAMPLES)


def test_sample_data_opens_as_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-odise", "astronaut")
    assert len(viewer.layers) == 1
    layer = viewer.layers[0]
    assert layer.name == "astronaut"
    assert layer.rgb
    np.testing.assert_array_equal(layer.data, load_sample_image("astronaut"))


def test_unknown_sample_is_refused_with_choices():
    import pytest

    with pytest.raises(ValueError, match="astronaut"):
        load_sample_image("nope")


def test_the_menus_show_the_names_the_readme_gives():
    """README: Plugins > napari-odise > Segment, File > Open Sample > napari-odise: napari
    names those menus after the manifest's display_name and the widgets' display names."""
    from pathlib import Path

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-odise")
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert manifest.display_name == "napari-odise"
    assert f"**Plugins > {manifest.display_name} > Segment**" in readme
    assert f"**File > Open Sample > {manifest.display_name}**" in readme
    for widget in manifest.contributions.widgets:
        assert f"**{widget.display_name}**" in readme
