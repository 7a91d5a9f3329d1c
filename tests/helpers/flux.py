"""A reduced random-weight Flux (diffusers' tiny test sizes: 2 double + 2 single blocks, D = 32, tiny CLIP-L and
T5 from loradeck/configs/flux_tiny) and the reference correspondence between BFL's fused weights and diffusers'
split modules (diffusers' single-file conversion), written out independently of loradeck's."""

from __future__ import annotations

import json
from importlib import resources

import torch
from diffusers import FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from loradeck.lora.flux_keys import keymap_from_flux_models


def _config(sub: str) -> dict:
    text = (resources.files("loradeck") / "configs" / "flux_tiny" / sub / "config.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def build_tiny_flux(seed: int = 0):
    torch.manual_seed(seed)
    tr = FluxTransformer2DModel(**_config("transformer")).eval()
    te1 = CLIPTextModel(CLIPTextConfig(**_config("text_encoder"))).eval()
    te2 = T5EncoderModel(T5Config(**_config("text_encoder_2"))).eval()
    comps = {"transformer": tr, "te1": te1, "te2": te2}
    return comps, keymap_from_flux_models(tr, {"te1": te1, "te2": te2})


def bfl_table(tr) -> dict[str, list[tuple[str, int]] | str]:
    """BFL dotted path → diffusers path (one-to-one) or [(diffusers path, rows)] (fused, in row order)."""
    cfg = tr.config
    d = cfg.num_attention_heads * cfg.attention_head_dim
    table: dict[str, list[tuple[str, int]] | str] = {}
    for i in range(cfg.num_layers):
        b, t = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        table[b + "img_attn.qkv"] = [(t + f"attn.to_{x}", d) for x in "qkv"]
        table[b + "txt_attn.qkv"] = [(t + f"attn.add_{x}_proj", d) for x in "qkv"]
        table.update(
            {
                b + "img_attn.proj": t + "attn.to_out.0",
                b + "txt_attn.proj": t + "attn.to_add_out",
                b + "img_mlp.0": t + "ff.net.0.proj",
                b + "img_mlp.2": t + "ff.net.2",
                b + "txt_mlp.0": t + "ff_context.net.0.proj",
                b + "txt_mlp.2": t + "ff_context.net.2",
                b + "img_mod.lin": t + "norm1.linear",
                b + "txt_mod.lin": t + "norm1_context.linear",
            }
        )
    for i in range(cfg.num_single_layers):
        b, t = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        mlp = tr.single_transformer_blocks[i].proj_mlp.out_features
        table[b + "linear1"] = [(t + f"attn.to_{x}", d) for x in "qkv"] + [(t + "proj_mlp", mlp)]
        table[b + "linear2"] = t + "proj_out"
        table[b + "modulation.lin"] = t + "norm.linear"
    table.update(
        {
            "img_in": "x_embedder",
            "txt_in": "context_embedder",
            "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
            "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
            "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
            "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
            "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
            "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
            "final_layer.linear": "proj_out",
            "final_layer.adaLN_modulation.1": "norm_out.linear",  # rows swapped (see _expected)
        }
    )
    return table


def write_t5_tokenizer(folder) -> None:
    """A tiny T5 tokenizer (Unigram over a few words and the letters), built offline with ``tokenizers``: the real
    T5-XXL sentencepiece model is not in the package or the test environment."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    words = ["▁a", "▁red", "▁blue", "▁circle", "▁square", "▁cat", "▁on", "▁the", "▁"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(w, -1.0) for w in words]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    t5 = T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0)
    t5.save_pretrained(str(folder))


def write_tiny_flux_folder(folder, seed: int = 0):
    """A diffusers FluxPipeline folder with random reduced weights and offline tokenizers; returns its path."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTokenizer

    from tests.helpers.checkpoints import tokenizer_ids, write_tokenizer

    comps, _ = build_tiny_flux(seed)
    bos, eos = tokenizer_ids()
    comps["te1"].config.bos_token_id, comps["te1"].config.eos_token_id = bos, eos
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[32, 32], layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=32,
        use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611,
    )  # fmt: skip
    sched = json.loads(
        (resources.files("loradeck") / "configs" / "flux" / "scheduler" / "scheduler_config.json").read_text()
    )
    tok_dir = write_tokenizer(folder / "_clip_tok")
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(sched),
        vae=vae.eval(),
        text_encoder=comps["te1"],
        tokenizer=CLIPTokenizer.from_pretrained(str(tok_dir)),
        text_encoder_2=comps["te2"],
        tokenizer_2=None,
        transformer=comps["transformer"],
    )
    write_t5_tokenizer(folder / "_t5_tok")
    from transformers import T5TokenizerFast

    pipe.tokenizer_2 = T5TokenizerFast.from_pretrained(str(folder / "_t5_tok"))
    pipe.register_modules(tokenizer_2=pipe.tokenizer_2)
    pipe.save_pretrained(str(folder))
    return folder


BLOCKS_ONLY = ("double_blocks.", "single_blocks.")


def _fused_weight(tr, target) -> torch.Tensor:
    if isinstance(target, str):
        return tr.get_submodule(target).weight.detach().float()
    return torch.cat([tr.get_submodule(p).weight.detach().float() for p, _ in target], 0)


def _swap(w: torch.Tensor) -> torch.Tensor:
    half = w.shape[0] // 2
    return torch.cat([w[half:], w[:half]], 0)


def kohya_flux_lora(comps, rank=4, alpha=2.0, seed=1, which=None, clip=True, t5=False):
    """A kohya Flux LoRA: BFL module names, random factors, over ``which`` BFL paths (default all of them)."""
    g = torch.Generator().manual_seed(seed)
    tr = comps["transformer"]
    sd: dict[str, torch.Tensor] = {}
    table = bfl_table(tr)
    for bfl, target in table.items():
        if which is not None and not which(bfl):
            continue
        w = _fused_weight(tr, target)
        name = "lora_unet_" + bfl.replace(".", "_")
        sd[f"{name}.lora_down.weight"] = torch.randn(rank, w.shape[1], generator=g) * 0.2
        sd[f"{name}.lora_up.weight"] = torch.randn(w.shape[0], rank, generator=g) * 0.2
        if alpha is not None:
            sd[f"{name}.alpha"] = torch.tensor(alpha)
    te_modules = []
    if clip:
        for i in range(comps["te1"].config.num_hidden_layers):
            for leaf in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"):
                te_modules.append(("te1", f"text_model.encoder.layers.{i}.{leaf}", f"encoder.layers.{i}.{leaf}"))
    if t5:
        for i in range(comps["te2"].config.num_layers):
            for leaf in ("layer.0.SelfAttention.q", "layer.1.DenseReluDense.wo"):
                te_modules.append(("te2", f"encoder.block.{i}.{leaf}", f"encoder.block.{i}.{leaf}"))
    for comp, kohya_path, path in te_modules:
        w = comps[comp].get_submodule(path).weight
        prefix = "lora_te1_" if comp == "te1" else "lora_te3_"
        name = prefix + kohya_path.replace(".", "_")
        sd[f"{name}.lora_down.weight"] = torch.randn(rank, w.shape[1], generator=g) * 0.2
        sd[f"{name}.lora_up.weight"] = torch.randn(w.shape[0], rank, generator=g) * 0.2
        if alpha is not None:
            sd[f"{name}.alpha"] = torch.tensor(alpha)
    return sd


_NORMS_DOUBLE = {
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
}
_NORMS_SINGLE = {"norm.query_norm.scale": "attn.norm_q.weight", "norm.key_norm.scale": "attn.norm_k.weight"}


def to_bfl(tr) -> dict[str, torch.Tensor]:
    sd = tr.state_dict()
    out = {}
    for bfl, target in bfl_table(tr).items():
        for leaf in ("weight", "bias"):
            if isinstance(target, str):
                t = sd[f"{target}.{leaf}"]
                if bfl == "final_layer.adaLN_modulation.1":
                    t = torch.cat([t[t.shape[0] // 2 :], t[: t.shape[0] // 2]])
            else:
                t = torch.cat([sd[f"{p}.{leaf}"] for p, _ in target])
            out[f"{bfl}.{leaf}"] = t.clone()
    for i in range(tr.config.num_layers):
        out |= {f"double_blocks.{i}.{k}": sd[f"transformer_blocks.{i}.{v}"] for k, v in _NORMS_DOUBLE.items()}
    for i in range(tr.config.num_single_layers):
        out |= {f"single_blocks.{i}.{k}": sd[f"single_transformer_blocks.{i}.{v}"] for k, v in _NORMS_SINGLE.items()}
    return out
