"""The page's look (theme, CSS) and its one script (Ctrl+Enter generates). Kept apart so the layout code stays short.

The theme uses system fonts only: the default Gradio theme fetches Google Fonts, and the UI must work offline and
make no request outside its own server.
"""

from __future__ import annotations

import gradio as gr

SYSTEM_SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
SYSTEM_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue="indigo", neutral_hue="slate", font=SYSTEM_SANS, font_mono=SYSTEM_MONO).set(
        block_radius="12px",
        button_large_radius="10px",
        button_primary_background_fill="*primary_600",
        button_primary_background_fill_hover="*primary_700",
        button_primary_text_color="white",
    )


# Ctrl+Enter (Cmd+Enter on a Mac) presses the Generate button of the visible tab, wherever the focus is.
SHORTCUTS_JS = """
() => {
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || !(event.ctrlKey || event.metaKey)) return;
    const button = document.querySelector('#ld-generate');
    if (!button || button.offsetParent === null) return;
    event.preventDefault();
    event.stopPropagation();
    button.click();
  }, true);
}
"""

CSS = """
.gradio-container { width: 100% !important; max-width: 1400px !important; margin: 0 auto; }
#ld-header { display: flex; align-items: baseline; gap: .75rem; flex-wrap: wrap; padding: .25rem 0; }
#ld-header h1 { font-size: 1.5rem; margin: 0; }
#ld-header .ld-tagline { color: var(--body-text-color-subdued); }
#ld-header a { margin-left: auto; font-size: .875rem; }
.ld-actions { gap: .5rem; }
#ld-generate { min-height: 3.25rem; font-size: 1.1rem; }
.ld-section-title h3 { margin: .75rem 0 0; }

/* progress bar */
.ld-progress { position: relative; height: 1.9rem; border-radius: 8px; overflow: hidden;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary); }
.ld-bar { position: absolute; inset: 0 auto 0 0; background: var(--color-accent-soft); transition: width .2s ease; }
.ld-running .ld-bar { background: linear-gradient(90deg, var(--primary-300), var(--primary-500)); }
.ld-done .ld-bar { background: var(--primary-200); }
.ld-error .ld-bar { background: #fecaca; }
.ld-progress-text { position: relative; display: block; line-height: 1.9rem; padding: 0 .75rem; font-size: .875rem;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }

/* tiny demo pictures: enlarge without blurring */
#ld-gallery img, #ld-preview img, #ld-png-drop img, .ld-thumb img { image-rendering: pixelated; }

/* status boxes */
.ld-status { border-radius: 8px; padding: .5rem .75rem; margin: .25rem 0; display: flex; gap: .5rem;
  border: 1px solid var(--border-color-primary); border-left-width: 5px; background: var(--background-fill-secondary); }
.ld-status p, .ld-status ul { margin: 0; }
.ld-status ul { padding-left: 1.1rem; }
.ld-status-error { border-left-color: #dc2626; background: #fef2f2; color: #7f1d1d; }
.ld-status-warning { border-left-color: #d97706; background: #fffbeb; color: #78350f; }
.ld-status-ok { border-left-color: #16a34a; }
.ld-status-info { border-left-color: var(--primary-500); }

.ld-status-title { white-space: nowrap; }
.ld-seed-buttons { gap: .35rem !important; justify-content: flex-end; }

/* weights panel */
.ld-weights { padding: .5rem .75rem; }
.ld-weights-title p { margin: 0 0 .25rem; }
.ld-weight [data-testid="min-value"], .ld-weight [data-testid="max-value"] { white-space: nowrap; }

/* LoRA cards */
.ld-toolbar { align-items: center; }
.ld-cards-head { color: var(--body-text-color-subdued); font-size: .875rem; margin: .25rem 0 .5rem; }
.ld-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: .75rem; }
.ld-card { all: unset; box-sizing: border-box; display: flex; flex-direction: column; cursor: pointer; min-width: 0;
  border: 1px solid var(--border-color-primary); border-radius: 12px; overflow: hidden;
  background: var(--block-background-fill); transition: transform .08s ease, box-shadow .12s ease, border-color .12s; }
.ld-card:hover, .ld-card:focus-visible { border-color: var(--primary-400); box-shadow: 0 4px 14px rgba(0,0,0,.12);
  transform: translateY(-1px); }
.ld-card:active { transform: translateY(0); }
.ld-thumb { position: relative; aspect-ratio: 1 / 1; background: var(--background-fill-secondary); overflow: hidden; }
.ld-thumb img { width: 100%; height: 100%; object-fit: cover; display: block; }
.ld-placeholder { width: 100%; height: 100%; display: flex; flex-direction: column; align-items: center;
  justify-content: center; gap: .25rem; color: var(--primary-700);
  background: repeating-linear-gradient(45deg, var(--primary-50), var(--primary-50) 10px, var(--primary-100) 10px,
  var(--primary-100) 20px); }
.ld-placeholder b { font-size: 2rem; letter-spacing: .05em; }
.ld-placeholder small { font-size: .75rem; opacity: .8; }
.ld-badges { position: absolute; top: .4rem; left: .4rem; right: .4rem; display: flex; flex-wrap: wrap; gap: .25rem; }
.ld-family, .ld-mismatch { font-size: .7rem; font-weight: 700; padding: .1rem .45rem; border-radius: 999px;
  color: #fff; background: #475569; box-shadow: 0 1px 3px rgba(0,0,0,.25); }
.ld-fam-sd1 { background: #2563eb; } .ld-fam-sd2 { background: #0d9488; } .ld-fam-sdxl { background: #7c3aed; }
.ld-fam-demo { background: #ea580c; } .ld-fam-unknown { background: #64748b; } .ld-fam-flux { background: #be123c; }
.ld-mismatch { background: #fbbf24; color: #451a03; }
.ld-card-mismatch .ld-thumb img, .ld-card-mismatch .ld-placeholder { opacity: .7; }
.ld-info { padding: .5rem .65rem .6rem; display: flex; flex-direction: column; gap: .2rem; min-width: 0; }
.ld-name { font-weight: 650; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.ld-sub, .ld-weight { font-size: .75rem; color: var(--body-text-color-subdued); overflow-wrap: anywhere; }
.ld-chips { display: flex; flex-wrap: wrap; gap: .25rem; }
.ld-chip { font-size: .72rem; padding: .05rem .4rem; border-radius: 6px; background: var(--primary-50);
  color: var(--primary-800); border: 1px solid var(--primary-100); overflow-wrap: anywhere; }
.ld-none { font-size: .72rem; color: var(--body-text-color-subdued); font-style: italic; }
.ld-empty { padding: 1.5rem; text-align: center; color: var(--body-text-color-subdued);
  border: 1px dashed var(--border-color-primary); border-radius: 12px; }
.ld-scan-errors { font-size: .8rem; margin-bottom: .5rem; color: #92400e; }

/* PNG info */
.ld-params { width: 100%; border-collapse: collapse; font-size: .85rem; table-layout: fixed; }
.ld-params th { text-align: left; width: 34%; padding: .3rem .5rem; color: var(--body-text-color-subdued);
  vertical-align: top; font-weight: 600; }
.ld-params td { padding: .3rem .5rem; overflow-wrap: anywhere; }
.ld-params tr:nth-child(odd) { background: var(--background-fill-secondary); }

/* Civitai */
.ld-civitai-results { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: .75rem; }
.ld-civitai-item { border: 1px solid var(--border-color-primary); border-radius: 12px; overflow: hidden;
  display: flex; flex-direction: column; background: var(--block-background-fill); min-width: 0; }
.ld-civitai-item .ld-thumb { aspect-ratio: 4 / 3; }
.ld-civitai-item .ld-thumb img { image-rendering: auto; }
.ld-civitai-download { margin-top: .35rem; padding: .4rem .6rem; border-radius: 8px; cursor: pointer; border: 0;
  background: var(--button-primary-background-fill); color: var(--button-primary-text-color); font-weight: 600; }
.ld-civitai-download:hover { background: var(--button-primary-background-fill-hover); }

/* phones: two cards a row, nothing wider than the screen */
@media (max-width: 640px) {
  .ld-cards { grid-template-columns: repeat(2, minmax(0, 1fr)); gap: .5rem; }
  .ld-civitai-results { grid-template-columns: minmax(0, 1fr); }
  #ld-header a { margin-left: 0; }
  .ld-output { order: -1; }  /* the result right under the Generate button, settings below */
}
"""
