"""The interactive zoom viewer: `python run.py task=serve checkpoint=CKPT` (see task.py).

geometry.py  which queries a view asks for (a viewport = a crop of the full upscale)
features.py  encoder features cached per (checkpoint, image), decoding from them
resample.py  Pillow's bicubic resize for one crop (the bicubic and ground-truth panes)
sources.py   the checkpoints and images the viewer may open
app.py       the web server (Starlette): page, info, renders, uploads
static/      the page: plain HTML, JS and CSS
"""
