import numpy as np
import pytest

from onet.gan.toy import ToyGame, train_toy


def test_four_points_oscillates_unregularised_and_converges_with_r1_r2():
    plain = train_toy(ToyGame("four-points"), h=0.1, steps=1500)
    tail = plain.error[-300:]
    assert tail.min() > 1e-2                       # keeps a non-vanishing error
    assert np.abs(plain.eigenvalues.real).min() < 1e-6   # an eigenvalue on the imaginary axis (w = h)
    for reg in ("r1", "r2"):
        res = train_toy(ToyGame("four-points", reg=reg, gamma=1.0), h=0.1, steps=1500)
        assert res.error[-1] < 1e-6 and res.w1[-1] < 1e-6
        assert (res.eigenvalues.real < 0).all()


def test_ellipse_converges_unregularised():
    game = ToyGame("ellipse")
    assert (game.eigenvalues().real < -1e-3).all()   # K_DD is non-singular (Lemma 5.5)
    res = train_toy(game, h=0.1, steps=3000)   # slowly: Re λ ≈ -0.004 for w = h = 1
    assert res.error[-300:].max() < 0.6 * res.error[:300].max()


def test_unknown_game_is_refused():
    with pytest.raises(ValueError, match="unknown toy game"):
        ToyGame("three-points")
