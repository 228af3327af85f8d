"""`onet gan` option checking: bad input exits 2 naming the option; small real runs of each game."""

import pytest

from onet.cli import main


@pytest.mark.parametrize("argv, option", [
    (["gan", "dirac", "--methods", "gan,r3"], "--methods"),
    (["gan", "dirac", "--gamma", "-1"], "--gamma"),
    (["gan", "dirac", "--sigma", "-0.5"], "--sigma"),
    (["gan", "dirac", "--h", "-0.1"], "--h"),
    (["gan", "dirac", "--h", "0"], "--h"),
    (["gan", "dirac", "--steps", "2.5"], "--steps"),
    (["gan", "dirac", "--gamma", "nan"], "--gamma"),
    (["gan", "toy", "ellipse", "--gamma", "-2"], "--gamma"),
    (["gan", "toy", "ellipse", "--steps", "ten"], "--steps"),
    (["gan", "toy", "circle"], "name"),
    (["gan", "toy", "ellipse", "--reg", "r3"], "--reg"),
    (["gan", "bench2d", "--methods", "r1,sngan"], "--methods"),
    (["gan", "bench2d", "--distributions", "moons"], "--distributions"),
    (["gan", "bench2d", "--iters", "1e4"], "--iters"),
])
def test_bad_options_exit_2_naming_the_option(argv, option, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv + ["--out", str(tmp_path / "out")]))
    assert exc.value.code == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_help_explains_the_gamma_convention(capsys):
    with pytest.raises(SystemExit):
        main(["gan", "--help"])
    text = capsys.readouterr().out
    assert "gamma/2 * E_data ||grad_x D||^2" in text and "gamma = 10 is gamma = 20 here" in text


def test_dirac_and_toy_verbs_write_their_outputs(tmp_path, capsys):
    assert main(["gan", "dirac", "--methods", "gan,r1", "--steps", "5", "--no-progress",
                 "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "dirac.md").exists() and (tmp_path / "d" / "r1.png").exists()
    assert main(["gan", "toy", "four-points", "--reg", "r1", "--steps", "50", "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "four-points_r1_alt.png").exists()
    assert "| r1 |" in capsys.readouterr().out
