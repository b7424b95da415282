"""Interchange runs for recurrent models whose site is their whole state after a position.

A subclass provides these hooks and gets ``run``, ``activations`` and ``resume``
(docs/contract.md):

* ``scan(ids (B, S), state) -> (outputs (B, S, d_out), last state)`` — one fused pass;
* ``site_from_state(state) -> (B, d)`` and ``state_from_site(h) -> state``;
* ``readout(outputs) -> logits``;
* ``output_from_site(h) -> (..., d_out)`` — what the readout reads; the default (below)
  is h itself (LSTM: the h half).

Optionally ``stepper() -> step(site (n, d), tokens (n,)) -> site (n, d)``, one time step on
site vectors with whatever can be precomputed (input projections of the vocabulary)
hoisted out. With it, ``resume`` runs a packed recurrence whose batch shrinks as rows end
— much cheaper than the fused pass over padding when suffix lengths vary, as they do in
alignment training.

``site_sequence(ids)`` gives the site at every position; the default is ``scan``'s outputs,
correct whenever the output *is* the state (GRU, Elman RNN).
"""

from __future__ import annotations

import torch

from .contract import Edit, left_align


class RecurrentRunner:
    """Mixin implementing the contract's runs from the recurrent hooks."""

    # --- hooks (GRU-style defaults where the output is the state) ----------------------
    def site_sequence(self, ids: torch.Tensor) -> torch.Tensor:
        return self.scan(ids)[0]

    def output_from_site(self, h: torch.Tensor) -> torch.Tensor:
        return h

    # --- the contract ------------------------------------------------------------------
    def activations(self, ids: torch.Tensor, site: str) -> torch.Tensor:
        self.check_site(site)
        return self.site_sequence(ids)

    def run(self, ids, site=None, pos=None, edit: Edit | None = None, mode="single"):
        if edit is None:
            return self.readout(self.scan(ids)[0])
        self.check_site(site)
        if mode == "single":
            return self._run_single(ids, site, pos, edit)
        if mode == "prefix":
            return self._run_prefix(ids, pos, edit)
        raise ValueError(f"unknown mode '{mode}'")

    def resume(self, site, h, suffix, select=None, lengths=None, fused=False, padded=False):
        """Logits (B, 1+S, V) for positions i..i+S (or (K, V) at ``select``), restarting
        from site state h at i."""
        self.check_site(site)
        if lengths is not None and select is not None and hasattr(self, "stepper"):
            return self._resume_packed(h, suffix, select, lengths, fused, padded)
        outputs, _ = self.scan(suffix, self.state_from_site(h))
        outputs = torch.cat([self.output_from_site(h).unsqueeze(1), outputs], dim=1)
        return self.readout(outputs if select is None else outputs[select])

    def _resume_packed(self, h, suffix, select, lengths, fused=False, padded=False):
        """Step the rows still alive at each position (rows sorted by length, longest
        first); gather the readout inputs at ``select`` in row-major order. ``fused``:
        a training step through the model's ``train_suffix`` (see ``models/fused.py``).
        ``padded``: row counts rounded up, as under bf16 autocast (below)."""
        ends = torch.bincount(torch.tensor(lengths)).cumsum(0)  # rows ended by each length
        alive = (len(lengths) - ends[:-1]).tolist()  # rows longer than s, s = 0 .. max - 1
        fused = fused and torch.is_grad_enabled() and hasattr(self, "train_suffix")
        # round row counts up (extra rows are never read) in a bf16 training step, where
        # oneDNN compiles a kernel per shape, and where asked (``padded``: float32 products
        # then never see the few rows for which MKL sums a row differently, machine.py):
        # either way a row's arithmetic does not depend on how many rows share its step
        padded = padded or torch.is_autocast_enabled("cpu")
        if padded:
            alive = [min(len(h), -(-n // 32) * 32) for n in alive]
        if fused:
            packed, readout = self.train_suffix(h, suffix, alive), self.readout.train_forward
        else:
            step, outs, cur = self.stepper(), [self.output_from_site(h)], h
            for s in range(1, len(alive)):
                cur = step(cur[: alive[s]], suffix[: alive[s], s - 1])
                outs.append(self.output_from_site(cur))
            packed, readout = torch.cat(outs), self.readout
        # start of position s when packed (position 0 holds every row, even one of length 0)
        offsets = torch.tensor([0, len(h)] + alive[1:-1], device=h.device).cumsum(0)[: len(alive)]
        rows, cols = select[:, : len(alive)].nonzero(as_tuple=True)
        at = offsets[cols] + rows
        if not padded:
            return readout(packed.index_select(0, at))
        K = len(at)  # as above: a few shapes, the padding rows dropped after
        at = torch.cat([at, at.new_zeros(-K % 256)])
        return readout(packed.index_select(0, at))[:K]

    def _run_single(self, ids, site, pos, edit):
        B, T = ids.shape
        rows = torch.arange(B, device=ids.device)
        sites = self.site_sequence(ids)  # (B, T, d): one plain pass
        logits = self.readout(self.output_from_site(sites))  # (B, T, V), kept before pos
        h_base = sites[rows, pos]  # (B, d)
        resumed = self.resume(site, edit(h_base, rows, pos), left_align(ids, pos + 1))
        S1 = resumed.shape[1]
        t = pos[:, None] + torch.arange(S1, device=ids.device)[None, :]  # (B, 1+S)
        keep = t < T
        r = rows[:, None].expand(B, S1)
        return logits.index_put((r[keep], t[keep]), resumed[keep])

    def _run_prefix(self, ids, pos, edit):
        """Step by step: at every t <= pos[b] the state is edited before it is read on."""
        B, T = ids.shape
        rows = torch.arange(B, device=ids.device)
        state, outs = None, []
        for t in range(T):
            _, state = self.scan(ids[:, t : t + 1], state)
            h = self.site_from_state(state)
            sel = rows[t <= pos]
            if len(sel):
                tt = torch.full_like(sel, t)
                h = h.index_put((sel,), edit(h[sel], sel, tt))
                state = self.state_from_site(h)
            outs.append(self.output_from_site(h))
        return self.readout(torch.stack(outs, dim=1))
