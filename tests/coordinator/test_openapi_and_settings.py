"""The API's published shape (OpenAPI), the authentication choke point covering every route, and settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.api import create_app
from coordinator.settings import CoordinatorSettings, SettingsError
from tests.coordinator.conftest import Coordinator, FakeRunner, Space, coordinator_settings

EXPECTED_OPERATIONS = {
    ("/catalog", "get"),
    ("/agreements", "get"),
    ("/agreements", "post"),
    ("/jobs", "get"),
    ("/jobs", "post"),
    ("/jobs/{job_id}", "get"),
    ("/jobs/{job_id}/cancel", "post"),
    ("/jobs/{job_id}/model", "get"),
    ("/queries/match", "post"),
    ("/jobs/{job_id}/valuation", "get"),
    ("/jobs/{job_id}/valuations", "post"),
    ("/audit/log/head", "get"),
    ("/audit/log/entries", "get"),
    ("/audit/log/consistency", "get"),
    ("/audit/heads", "get"),
    ("/audit/heads", "post"),
    ("/audit/heads/observed", "post"),
    ("/audit/heads/collect", "post"),
    ("/audit/heads/{node}", "get"),
    ("/audit/alerts", "get"),
    ("/audit/status", "get"),
    ("/audit/sync", "post"),
    ("/audit/entries", "get"),
    ("/audit/usage", "get"),
    ("/me", "get"),
    ("/jobs/{job_id}/provenance", "get"),
}


def test_openapi_lists_every_route_with_its_response_model(coordinator: Coordinator) -> None:
    with coordinator.client("bea") as client:
        schema = client.get("/openapi.json").json()
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations == EXPECTED_OPERATIONS
    for path, method in EXPECTED_OPERATIONS:
        responses = schema["paths"][path][method]["responses"]
        [success] = [code for code in responses if code.startswith("2") and code != "200"] or ["200"]
        content = responses[success]["content"]
        if path.endswith("/model"):
            assert "application/octet-stream" in content
        else:
            described = json.dumps(content["application/json"]["schema"])
            assert "$ref" in described, (path, method, described)
        assert "401" in responses, (path, method)
    job_status = schema["components"]["schemas"]["JobStatus"]["properties"]
    assert {"rounds", "epsilon_spent_by_node", "state", "reason"} <= set(job_status)
    assert not {"grants", "model_file"} & set(job_status)


def test_every_published_route_refuses_a_caller_without_a_token(coordinator: Coordinator) -> None:
    """The choke point, checked from outside: each operation the schema lists answers 401 without a token."""
    with coordinator.client("bea") as client:
        schema = client.get("/openapi.json").json()
        for path, item in schema["paths"].items():
            for method in item:
                response = client.request(
                    method, path.replace("{job_id}", "job-1"), json={}, headers={"Authorization": ""}
                )
                assert response.status_code == 401, (method, path, response.text)
                assert "no token" in response.json()["detail"]


def test_the_coordinator_refuses_an_identity_that_is_not_a_coordinators(space: Space, tmp_path: Path) -> None:
    settings = coordinator_settings(space, tmp_path).model_copy(update={"identity_dir": space.members["bea"]})
    with pytest.raises(SettingsError, match="holds the role 'builder'"):
        create_app(settings, FakeRunner())


def test_settings_round_trip_and_name_the_file_when_wrong(space: Space, tmp_path: Path) -> None:
    settings = coordinator_settings(space, tmp_path / "data")
    path = tmp_path / "coordinator.json"
    settings.save(path)
    assert CoordinatorSettings.load(path) == settings
    document = json.loads(path.read_text())
    document["nodes"].append(document["nodes"][0])
    path.write_text(json.dumps(document))
    with pytest.raises(SettingsError, match=f"{path}.*node-us appears twice"):
        CoordinatorSettings.load(path)
    document["nodes"] = [{"name": "n", "address": "no-port"}]
    path.write_text(json.dumps(document))
    with pytest.raises(SettingsError, match="must be host:port"):
        CoordinatorSettings.load(path)


def test_no_answer_of_the_api_may_be_stored_by_a_cache(coordinator: Coordinator) -> None:
    with coordinator.client("rita") as rita:
        answers = [
            rita.get("/audit/status"),
            rita.get("/jobs"),
            rita.get("/jobs", headers={"Authorization": ""}),
        ]
    assert [answer.status_code for answer in answers] == [200, 200, 401]
    assert all(answer.headers["cache-control"] == "no-store" for answer in answers)
