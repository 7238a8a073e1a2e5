"""``kubectl run --rm -i`` on the busybox image (its own root filesystem): stdin through the relay, output back."""

from __future__ import annotations

import pytest

from tests.harness import DaemonHarness
from tests.integration.test_image_pods import daemon, kubectl  # noqa: F401 - fixtures
from tests.integration.test_kubectl import Kubectl
from tests.testimages import image_registry  # noqa: F401 - the session fixture

pytestmark = pytest.mark.root


def test_run_rm_i_cat_on_the_busybox_image(daemon: DaemonHarness, kubectl: Kubectl) -> None:  # noqa: F811
    p = kubectl.run("run", "--rm", "-i", "--restart=Never", "imgcat", "--image=busybox", "--", "sh", "-c",
                    "cat; echo tail-$((2+3))", check=False)
    assert "tail-5" in p.stdout, (p.stdout, p.stderr)
