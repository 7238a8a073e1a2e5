"""Image references normalised as Docker/containerd do, and malformed ones refused at validation."""

from __future__ import annotations

import pytest

from minikubelet.images.reference import InvalidReference, default_pull_policy, invalid_image_message, parse
from minikubelet.manifests.validation import validate_image

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("image", "normalised"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.14", "docker.io/library/nginx:1.14"),
        ("user/app", "docker.io/user/app:latest"),
        ("index.docker.io/x/y", "docker.io/x/y:latest"),
        ("docker.io/nginx", "docker.io/library/nginx:latest"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1"),
        ("reg.io/a/b", "reg.io/a/b:latest"),
        ("Foo/bar", "Foo/bar:latest"),
        (f"nginx@{DIGEST}", f"docker.io/library/nginx@{DIGEST}"),
        (f"nginx:1.14@{DIGEST}", f"docker.io/library/nginx:1.14@{DIGEST}"),
        ("quay.io/a/b-c__d.e:v1.2_3", "quay.io/a/b-c__d.e:v1.2_3"),
    ],
)
def test_normalised_as_containerd(image: str, normalised: str) -> None:
    assert str(parse(image)) == normalised


def test_digest_wins_over_tag_for_fetching() -> None:
    ref = parse(f"nginx:1.14@{DIGEST}")
    assert ref.object == DIGEST
    assert ref.tag == "1.14"
    assert ref.name == "docker.io/library/nginx"
    assert ref.with_digest(DIGEST) == f"docker.io/library/nginx@{DIGEST}"


@pytest.mark.parametrize(
    "image",
    [
        "Nginx",
        "nginx:",
        "nginx::1",
        ":1.14",
        "nginx@sha256:abc",
        "a" * 64,
        "reg.io/",
        "nginx/",
        "UP/Per/x",
        "nginx:" + "t" * 129,
        "-bad/x",
        "a..b/c/d:x x",
    ],
)
def test_malformed_refused(image: str) -> None:
    with pytest.raises(InvalidReference):
        parse(image)


def test_kubelet_invalid_image_message() -> None:
    assert invalid_image_message("Nginx") == (
        'Failed to apply default image tag "Nginx": couldn\'t parse image name "Nginx": '
        "invalid reference format: repository name must be lowercase"
    )
    assert invalid_image_message("nginx:1.14") is None


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.14", "IfNotPresent"),
        (f"nginx@{DIGEST}", "IfNotPresent"),
        ("localhost:5000/app", "Always"),
    ],
)
def test_default_pull_policy(image: str, policy: str) -> None:
    assert default_pull_policy(image) == policy


def test_validation_names_the_field() -> None:
    (err,) = validate_image("nginx::1", "spec.containers[0].image")
    assert err.startswith('spec.containers[0].image: Invalid value: "nginx::1": invalid reference format')
    (err,) = validate_image(" nginx", "spec.containers[1].image")
    assert "leading or trailing whitespace" in err
    assert validate_image("nginx:1.14", "spec.containers[0].image") == []
