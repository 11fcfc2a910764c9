import time, torch
t=time.time()
from devtools import harness as h
from devtools.graphs import edit_graph
h.boot()
m, clip, vae = h.tiny_model("z_image")
print("built", time.time()-t)
ep = h.pack("host.prompts").encode_prompts
cond, prompts = ep(clip, "a red cat, riding unbelievably", ["a blue dog"])
s = prompts.source
print(s.words, s.length, cond[0][0].shape, {k: (v.shape if torch.is_tensor(v) else v) for k,v in cond[0][1].items()})
print(list(zip(s.token_ids, s.token_words)))
cap = h.captured_latents()
h.run_graph(edit_graph(family="z_image", source="a red cat riding a bicycle", target="a red cat riding a bicycle", steps=3))
o = cap["out"]; print(o.shape, torch.equal(o[0], o[1]))
g = edit_graph(family="z_image", target="a blue dog riding a bicycle", steps=3, edit_inputs={"self_layers": "all"}, chain=[("Reweight", {"weights": "dog=2.5", "cross_replace": 0.8, "self_replace": 0.4})])
h.run_graph(g); a = cap["out"].clone()
h.run_graph(edit_graph(family="z_image", target="a blue dog riding a bicycle", steps=3, edit=None, source="a blue dog riding a bicycle", chain=[]))
b = cap["out"]
print("edit vs alone", float((a[1]-b[0]).abs().max()/b.abs().max()))
print("t", time.time()-t)
