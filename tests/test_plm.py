"""Pretrained protein LMs: resolver (embedded / folder / hub), tokenizers, weights hash, embedding
featurizers, loading options. Everything runs offline: a tiny random ESM-2 stands in for hub
models, and the embedded AntiBERTy is exercised on one short sequence."""

from __future__ import annotations

import hashlib
import json
import logging

import huggingface_hub
import pytest
import torch
from conftest_plm import SEQUENCES, make_tiny_esm

from biomol_dl import plm
from biomol_dl.features import build_featurizer

ANTIBODY = "EVQLVESGGGLVQPGGSLRLSCAAS"


@pytest.fixture(scope="module")
def esm_dir(tmp_path_factory):
    return make_tiny_esm(tmp_path_factory.mktemp("tiny_esm"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    # huggingface_hub reads HF_HUB_OFFLINE at import time: patch the constant too
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("BIOMOL_DL_CACHE", str(tmp_path / "cache"))


def _round_trip(tokenizer, seq: str) -> str:
    ids = plm.tokenize(tokenizer, [seq])[0]
    specials = set(plm.special_ids(tokenizer))
    return "".join(tokenizer.convert_ids_to_tokens([i for i in ids if i not in specials]))


def test_esm_tokenizer_from_a_local_folder(esm_dir):
    resolved = plm.resolve_model(str(esm_dir))
    assert resolved.source == "folder" and resolved.model_type == "esm"
    tokenizer = plm.load_tokenizer(resolved)
    for seq in SEQUENCES + ["MKXAC"]:
        assert _round_trip(tokenizer, seq) == seq
    ids = plm.tokenize(tokenizer, ["MKV"])[0]
    assert tokenizer.convert_ids_to_tokens(ids) == ["<cls>", "M", "K", "V", "<eos>"]
    assert plm.residue_limit(resolved, tokenizer, None) == 1022  # rotary: capped, not 1024


def test_antiberty_tokenizer_keeps_residues_upper_case():
    resolved = plm.resolve_model("antiberty")
    assert resolved.source == "embedded" and resolved.model_type == "bert"
    assert resolved.tokenizer_dir.name == "trained_models"
    tokenizer = plm.load_tokenizer(resolved)
    assert _round_trip(tokenizer, ANTIBODY) == ANTIBODY
    ids = plm.tokenize(tokenizer, ["EVQX"])[0]
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "E", "V", "Q", "[UNK]", "[SEP]"]
    assert plm.residue_limit(resolved, tokenizer, None) == 510  # 512 absolute positions - 2
    with pytest.raises(plm.PLMError, match="max_length=600 residues is more than"):
        plm.residue_limit(resolved, tokenizer, 600)


def test_lowercasing_bert_tokenizer_is_fixed_for_a_bert_folder(tmp_path):
    # a BERT folder with only vocab.txt: AutoTokenizer would lowercase residues into [UNK]
    (tmp_path / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"ACDEFGHIKLMNPQRSTVWY"])
    )
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"not really weights")
    tokenizer = plm.load_tokenizer(plm.resolve_model(str(tmp_path)))
    assert _round_trip(tokenizer, "ACDY") == "ACDY"


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        (
            "biomol-dl-tests/no-such-model",
            r"'biomol-dl-tests/no-such-model' is not a local folder "
            r"and could not be fetched from the HuggingFace hub",
        ),
        ("/no/such/folder", r"pretrained model folder /no/such/folder does not exist"),
        ("./models/esm", r"pretrained model folder ./models/esm does not exist"),
    ],
)
def test_resolver_errors_are_one_line(spec, pattern):
    with pytest.raises(plm.PLMError, match=pattern) as err:
        plm.resolve_model(spec)
    message = str(err.value)
    assert "\n" not in message
    assert "local folder" in message and "antiberty" in message


def test_incomplete_folder_names_what_is_missing(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(plm.PLMError, match=r"lacks weights .*; tokenizer files") as err:
        plm.resolve_model(str(tmp_path))
    assert "\n" not in str(err.value)


def test_weights_hash_is_the_file_sha256_and_follows_changes(esm_dir, tmp_path):
    weights = esm_dir / "model.safetensors"
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert plm.resolve_model(str(esm_dir)).describe()["weights_sha256"] == expected
    copy = make_tiny_esm(tmp_path / "other", seed=1)
    first = plm.weights_sha256(copy)
    (copy / "model.safetensors").write_bytes(b"changed")
    assert plm.weights_sha256(copy) == hashlib.sha256(b"changed").hexdigest() != first


def test_antiberty_default_embeds_a_sequence_offline():
    out = build_featurizer(
        {"type": "plm_embedding", "model": "antiberty", "device": "cpu"}
    ).featurize_table([ANTIBODY])
    assert out["X"].shape == (1, 512) and torch.isfinite(out["X"]).all()
    assert out["X"].abs().sum() > 0 and out["embedding_dim"] == 512
    assert len(out["weights_sha256"]) == 64 and out["n_truncated"] == 0


def test_embedding_pools_residues_only_and_ignores_batching(esm_dir):
    resolved = plm.resolve_model(str(esm_dir))
    tokenizer, model = plm.load_tokenizer(resolved), plm.load_model(resolved)
    one_by_one = plm.embed_sequences(model, tokenizer, SEQUENCES, batch_tokens=1)
    together = plm.embed_sequences(model, tokenizer, SEQUENCES, batch_tokens=10_000)
    torch.testing.assert_close(one_by_one, together, atol=2e-5, rtol=1e-4)
    ids = torch.tensor([plm.tokenize(tokenizer, [SEQUENCES[0]])[0]])
    with torch.no_grad():
        hidden = model(input_ids=ids).last_hidden_state[0]
    torch.testing.assert_close(together[0], hidden[1:-1].mean(0), atol=2e-5, rtol=1e-4)

    out = build_featurizer(
        {
            "type": "plm_embedding",
            "model": str(esm_dir),
            "max_length": 20,
            "device": "cpu",
            "batch_tokens": 64,
        }
    ).featurize_table(SEQUENCES)
    assert out["X"].shape == (6, 32)
    assert out["n_truncated"] == sum(len(s) > 20 for s in SEQUENCES) > 0


def test_plm_tokens_featurizer(esm_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="biomol_dl"):
        out = build_featurizer(
            {
                "type": "plm_tokens",
                "model": str(esm_dir),
                "max_length": 25,
                "length_policy": "crop_center",
            }
        ).featurize_table(SEQUENCES)
    n_long = sum(len(s) > 25 for s in SEQUENCES)
    assert out["n_truncated"] == n_long > 0
    assert f"{n_long} of 6 sequences are longer than max_length=25" in caplog.text
    assert out["input_ids"].shape == (6, 27) and out["pad_token_id"] == 1
    assert out["lengths"].tolist() == [min(len(s), 25) + 2 for s in SEQUENCES]
    assert (out["input_ids"][~out["attention_mask"]] == 1).all()
    assert out["model"] == str(esm_dir)


def test_quantization_without_cuda_falls_back_loudly(esm_dir, caplog):
    resolved = plm.resolve_model(str(esm_dir))
    with caplog.at_level(logging.WARNING, logger="biomol_dl"):
        model = plm.load_model(resolved, quantization="8bit")
    if not torch.cuda.is_available():
        assert "quantization needs CUDA + bitsandbytes; loading in full precision" in caplog.text
        assert model.quantized is None
    with pytest.raises(plm.PLMError, match="unknown quantization '3bit'"):
        plm.load_model(resolved, quantization="3bit")


def test_gradient_checkpointing_with_lora_still_trains(esm_dir):
    resolved = plm.resolve_model(str(esm_dir))
    base = plm.load_model(resolved, gradient_checkpointing=True)
    assert base.is_activation_checkpointing
    model = plm.apply_lora(base, r=2, model_type=resolved.model_type).train()
    ids = torch.tensor(plm.tokenize(plm.load_tokenizer(resolved), ["MKVLA"]))
    model(input_ids=ids).last_hidden_state.sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None for g in grads)
    with pytest.raises(plm.PLMError, match="name lora target_modules for model type 't5'"):
        plm.apply_lora(base, model_type="t5")


def test_hub_id_resolves_through_snapshot_download(esm_dir, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, tuple(allow_patterns)))
        return str(esm_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    resolved = plm.resolve_model("facebook/esm2_t6_8M_UR50D", revision="abc123")
    assert resolved.source == "hub" and resolved.model_dir == esm_dir.resolve()
    assert resolved.describe()["model"] == "facebook/esm2_t6_8M_UR50D"
    # safetensors first; the pickle-based .bin is fetched only for repos without them
    assert calls == [
        ("facebook/esm2_t6_8M_UR50D", "abc123", ("*.json", "*.txt", "*.model", "*.safetensors"))
    ]
    assert plm.load_tokenizer(resolved).pad_token_id == 1


def test_embedding_precisions_on_cpu(esm_dir, monkeypatch, caplog):
    spec = {"type": "plm_embedding", "model": str(esm_dir), "device": "cpu"}
    fp32 = build_featurizer({**spec, "precision": "fp32"}).featurize_table(SEQUENCES)
    assert fp32["precision"] == "fp32"
    for precision in ("bf16", "int8"):
        out = build_featurizer({**spec, "precision": precision}).featurize_table(SEQUENCES)
        expected = "fp32" if precision == "bf16" and not plm.cpu_supports_bf16() else precision
        assert out["precision"] == expected
        cosine = torch.nn.functional.cosine_similarity(out["X"], fp32["X"], dim=1)
        assert cosine.min() > 0.98 and not torch.equal(out["X"], fp32["X"]), precision
    monkeypatch.setattr(plm, "cpu_supports_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="biomol_dl"):
        assert plm.resolve_precision("bf16", "cpu") == "fp32"
    assert "no native bf16 (avx512_bf16 / AMX), running in fp32" in caplog.text
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, int8"):
        build_featurizer({**spec, "precision": "fp16"})


def test_states_entering_a_layer_are_the_layer_inputs(esm_dir):
    resolved = plm.resolve_model(str(esm_dir))
    tokenizer, model = plm.load_tokenizer(resolved), plm.load_model(resolved)
    states = plm.states_entering(model, tokenizer, SEQUENCES[:2], layer=1, precision="fp32")
    ids = torch.tensor(plm.tokenize(tokenizer, [SEQUENCES[1]]))
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[1][0]
    torch.testing.assert_close(states[1].float(), hidden, atol=2e-3, rtol=1e-3)  # fp16 storage
    with pytest.raises(plm.PLMError, match="cache_layer=2: must be between 1 and 1"):
        plm.states_entering(model, tokenizer, SEQUENCES, layer=2)


def test_a_pass_estimated_beyond_the_job_runtime_stops_after_its_first_batch(
    esm_dir, tmp_path, caplog
):
    from biomol_dl.featurize import run_featurize

    clean = tmp_path / "clean.csv"
    clean.write_text("id,input\n" + "".join(f"s{i},{s}\n" for i, s in enumerate(SEQUENCES)))
    base = {"model": str(esm_dir), "device": "cpu", "batch_tokens": 64}  # a batch or two each
    specs = {
        "emb": ({"type": "plm_embedding", **base}, "embedded"),
        "tok": ({"type": "plm_tokens", "cache_layer": 1, **base}, "states entering layer 1"),
    }
    for name, (spec, what) in specs.items():
        out = tmp_path / f"{name}.pt"
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="biomol_dl"):
            with pytest.raises(plm.PLMError) as err:
                run_featurize(clean, spec, out, runtime=1e-6, name=f"ds/{name}")
        line = str(err.value)
        assert line.startswith(f"ds/{name}: {what}: all 6 sequences are estimated at ")
        assert "in the first, longest batch at fp32; an upper bound), which with " in line
        assert "exceeds the job's runtime of 1e-06 min; use precision: int8" in line
        assert line.endswith("(--set-resources featurize:runtime=10)") and "\n" not in line
        # stopped right after the first batch: its estimate logged, no progress, no output
        assert "first (longest) batch" in caplog.text and "/6 sequences (" not in caplog.text
        assert not out.exists()
        for runtime in (None, 10_000):
            assert run_featurize(clean, spec, out, runtime=runtime)["n"] == 6
    with plm.time_limit(1e-6, "ds/emb"):  # on CUDA the first batch carries the warm-up
        plm.check_time_limit("embedded", 5.0, 1.0, 6, "bf16", "cuda")
        with pytest.raises(plm.PLMError, match="runtime of 1e-06 min; use precision: int8, or a"):
            plm.check_time_limit("embedded", 5.0, 1.0, 6, "bf16", "cpu")
