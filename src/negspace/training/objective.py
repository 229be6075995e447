"""Assembles a batch loss from the model's vectors, a loss and the regularisers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from negspace.errors import NegspaceError
from negspace.losses import bpr, cosine_contrastive, multi_margin, triplet_hinge
from negspace.losses.multinomial import multinomial_nll
from negspace.losses.sampled_softmax import bilateral_softmax, sampled_softmax
from negspace.models.base import EmbeddingModel, score_matrix
from negspace.registry import LOSSES, LossFamily
from negspace.regularizers import covariance, embedding_l2, gor
from negspace.samplers.candidates import CandidateSet
from negspace.training import shared_loss
from negspace.training.device import score_autocast


@dataclass
class Objective:
    """Args:
        loss: "triplet" (hardest-of-N hinge on -score, summed over the batch as in the paper),
            "bpr", "softmax" (sampled softmax, mean over the batch), or the cosine losses "ccl"
            and "mml" (mean over the batch, as SimpleX).
        margin: triplet margin, or the CCL margin.
        margins, margin_weights: the MML margins and their weights.
        negative_weight: CCL/MML weight of the mean over negatives.
        positive_weight: MML weight of the positive term.
        rank_weight: WARP-style weight on the triplet terms.
        gor_weight: lambda_g of the spread-out regulariser (0 disables it).
        cov_weight: weight of CML's covariance regulariser.
        l2_weight: L2 penalty on the looked-up vectors.
        temperature: softmax temperature T (the "softmax" loss).
        logq_strength: A, the strength of the softmax's logQ correction (0 disables it).
        split_bank_gradient: with memory-bank candidates and the softmax loss, the sum of two
            softmax terms: positive + batch + bank with the item vectors held fixed (the user
            tower's gradient) and positive + batch alone with the user vectors held fixed (the
            item tower's). The bank's stored vectors are constants, so in the one softmax of the
            paper they take probability mass from the live in-batch negatives and weaken the push
            the item tower gets from them (docs/results.md, issue 3); here the item tower learns
            as with in-batch negatives and only the user tower sees the bank.
    """

    loss: str = "triplet"
    margin: float = 1.0
    rank_weight: bool = False
    gor_weight: float = 0.0
    cov_weight: float = 0.0
    l2_weight: float = 0.0
    margins: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9)
    margin_weights: tuple[float, ...] = (0.05, 0.15, 0.2, 0.6)
    negative_weight: float = 1.0
    positive_weight: float = 1.0
    temperature: float = 1.0
    logq_strength: float = 1.0
    split_bank_gradient: bool = False
    negative_temperature: float | None = None
    # the full softmax's [B, d] x [d, n_items] products in bfloat16 on a CPU. Not the sampled
    # ones, whose width changes every step: with them in bfloat16 the 8M-pair run's peak memory
    # grew from 3.9 to 6.4 GB (cause not found) for 0.88x of an epoch's cpu-seconds
    bf16_scores: bool = False

    def _scores(self, u: torch.Tensor, v: torch.Tensor, measure: str) -> torch.Tensor:
        """score_matrix, its product in bfloat16 under CPU autocast with `bf16_scores` (float32
        tables in, float32 scores out: the softmax and its sums stay float32); l2 keeps float32,
        whose difference of squared norms bfloat16 would round away."""
        if not self.bf16_scores or measure == "l2":
            return score_matrix(u, v, measure)
        with score_autocast():
            return score_matrix(u, v, measure).float()

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise NegspaceError(f"unknown loss {self.loss!r}; the losses are {', '.join(LOSSES)}")

    @property
    def family(self) -> LossFamily:
        return LOSSES[self.loss].family

    def _softmax_terms(self, pos: torch.Tensor, neg: torch.Tensor,
                       log_q_pos: torch.Tensor | None = None, log_q_neg: torch.Tensor | None = None,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B] terms of the softmax loss, or of BSL (bilateral: a temperature for each side)."""
        if self.loss == "bsl":
            return bilateral_softmax(pos, neg, self.temperature,
                                     self.negative_temperature or self.temperature, mask,
                                     log_q_neg if self.logq_strength else None)
        return sampled_softmax(pos, neg, self.temperature, log_q_pos, log_q_neg,
                               self.logq_strength, mask)

    def __call__(self, model: EmbeddingModel, users: torch.Tensor, items: torch.Tensor,
                 negatives: torch.Tensor, negative_mask: torch.Tensor | None = None,
                 bank: CandidateSet | None = None,
                 log_q: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            users, items: [B] indices of the positive pairs.
            negatives: [B, N] negative item indices per row, or [N] shared by every row (the
                cosine losses score them with one [B, d] x [d, N] product).
            negative_mask: optional [B, N] bool, False where a negative is ignored (a shared
                negative that is a positive of the row's user); cosine and softmax losses only.
            log_q: optional [N] log probability of each shared negative under the sampler's law
                (the softmax losses' logQ correction; None or constant: no correction needed).

        Returns:
            Scalar loss.
        """
        u = model.user_vectors_for_pairs(users, items)
        p = model.item_vectors(items)
        family = self.family
        if family is LossFamily.COSINE:
            return self._cosine(model, u, p, negatives, negative_mask)
        if family is LossFamily.SOFTMAX and negatives.dim() == 1:
            return self._shared_softmax(model, u, p, negatives, negative_mask, log_q)
        if negatives.dim() != 2 or negative_mask is not None:
            raise NegspaceError(f"the {self.loss} loss needs per-row negatives")
        n = model.item_vectors(negatives.reshape(-1)).reshape(*negatives.shape, -1)
        pos = model.score(u, p)
        neg = model.score(u.unsqueeze(1), n)
        if bank is not None:  # shared candidates join each row's N (masked ones are never chosen)
            extra = [score_matrix(u, model.item_vectors(bank.ids), model.measure)
                     .masked_fill(~bank.mask, float("-inf"))]
            if bank.bank_vectors is not None:
                extra.append(score_matrix(u, bank.bank_vectors, model.measure)
                             .masked_fill(~bank.bank_mask, float("-inf")))
            neg = torch.cat([neg, *extra], dim=1)
        if family is LossFamily.HINGE:
            # For l2 models -score is D^2; for dot/cosine models it is the negated similarity.
            total = triplet_hinge(-pos, -neg, self.margin, self.rank_weight, model.n_items).sum()
        elif family is LossFamily.SOFTMAX:  # per-row: no logQ correction (exact for uniform)
            total = self._softmax_terms(pos, neg).mean()
        else:
            total = bpr(pos, neg).mean()
        return self._regularised(total, u, p, n)

    def _regularised(self, total: torch.Tensor, u: torch.Tensor, p: torch.Tensor,
                     n: torch.Tensor) -> torch.Tensor:
        """`total` plus the configured regularisers of the batch's user, positive and [B, N, d]
        negative vectors."""
        if self.gor_weight:
            total = total + self.gor_weight * gor(p, n)
        if self.cov_weight:
            total = total + self.cov_weight * covariance(torch.cat([u, p]))
        if self.l2_weight:
            total = total + self.l2_weight * embedding_l2(u, p, n.reshape(-1, n.shape[-1]))
        return total

    def with_candidates(self, model: EmbeddingModel, users: torch.Tensor, items: torch.Tensor,
                        candidates: CandidateSet, negatives: torch.Tensor | None = None) -> torch.Tensor:
        """Loss with embedding-level negatives (in-batch, uniform sampled softmax, memory bank).

        Args:
            users, items: [B] indices of the positive pairs.
            candidates: the batch's shared candidates (and the bank's stored vectors).
            negatives: [B, N] per-row negatives, for the triplet loss (the bank's vectors join
                them as extra candidates of the hardest-of-N hinge).

        Returns:
            Scalar loss: the mean sampled-softmax or CCL/MML term (the candidates and the bank's
            vectors are every row's negatives), or the summed triplet terms.
        """
        family = self.family
        if family is LossFamily.HINGE:
            if negatives is None:
                raise NegspaceError("the triplet loss needs per-row negatives")
            return self(model, users, items, negatives, bank=candidates)
        if not LOSSES[self.loss].candidates:
            raise NegspaceError(f"in-batch and memory-bank negatives need --loss softmax, ccl, mml "
                                f"or triplet; got {self.loss}")
        u = model.user_vectors_for_pairs(users, items)
        p = model.item_vectors(items)
        bank = candidates.bank_vectors
        # In-batch candidates are the batch's positives: reuse their vectors rather than recompute.
        same = candidates.ids.data_ptr() == items.data_ptr() or torch.equal(candidates.ids, items)
        full = candidates.full and len(candidates.ids) == model.n_items
        gather = getattr(candidates, "gather", None)  # --nproc: the global batch, with gradient
        n = (gather(p) if gather is not None else p if same
             else model.item_vectors(None if full else candidates.ids))
        cosine = family is LossFamily.COSINE
        if cosine:  # dot products of unit vectors, as in _cosine (CML's score is -distance^2)
            _require_unit_vectors(model, self.loss)
        scores = (lambda a, b: a @ b.T) if cosine else (lambda a, b: score_matrix(a, b, model.measure))
        neg, log_q, mask = scores(u, n), candidates.log_q, candidates.mask
        if bank is not None:
            neg = torch.cat([neg, scores(u, bank)], dim=1)
            log_q = torch.cat([log_q, candidates.bank_log_q])
            mask = torch.cat([mask, candidates.bank_mask], dim=1)
        if cosine:  # the candidates (and stored vectors) are every row's negatives; no logQ
            total = self._cosine_terms((u * p).sum(-1), neg, mask)
        elif self.split_bank_gradient and bank is not None:
            pd, nd, ud = p.detach(), n.detach(), u.detach()
            user_term = sampled_softmax(model.score(u, pd), torch.cat([scores(u, nd), scores(u, bank)], 1),
                                        self.temperature, candidates.log_q_pos, log_q,
                                        self.logq_strength, mask)
            item_term = sampled_softmax(model.score(ud, p), scores(ud, n), self.temperature,
                                        candidates.log_q_pos, candidates.log_q, self.logq_strength,
                                        candidates.mask)
            total = user_term.mean() + item_term.mean()
        else:
            total = self._softmax_terms(model.score(u, p), neg, candidates.log_q_pos, log_q,
                                        mask).mean()
        if self.l2_weight:
            total = total + self.l2_weight * embedding_l2(u, p, n)
        return total

    def multinomial(self, model: EmbeddingModel, users: torch.Tensor,
                    positives: tuple[torch.Tensor, torch.Tensor],
                    sample: torch.Tensor | None = None) -> torch.Tensor:
        """The full softmax batched by users: each user's scores over the catalogue computed
        once, -log softmax summed over its positives (the multinomial likelihood of Mult-VAE):
        the same terms as the full softmax over the user's pairs with its other positives left
        among the negatives, at B_users x n_items scores a step instead of B_pairs x n_items.

        With `sample` (N items drawn uniformly with replacement, shared by the batch) the
        catalogue's sum of exp(score) is estimated in two strata: the batch's positive items
        exactly (popular, so the largest terms), the other items from the sample (n_items / N
        times the sum over its draws outside the positives: unbiased), at
        B_users x (positives + N) scores a step instead of B_users x n_items.

        Args:
            users: [B] user indices.
            positives: (rows, cols): batch row and item of each of the users' positives.
            sample: [N] item indices, or None for the whole catalogue.

        Returns:
            Scalar: the mean over the batch's positive pairs, plus the L2 term.
        """
        u = model.user_vectors_for_pairs(users, users)
        rows, cols = positives
        log_weight = None
        if sample is not None:  # the batch's positives, then the draws outside them
            batch_items, cols = torch.unique(cols, return_inverse=True)
            outside = ~torch.isin(sample, batch_items)
            log_weight = torch.cat([torch.zeros(len(batch_items), device=outside.device),
                                    torch.where(outside, math.log(model.n_items / len(sample)),
                                                float("-inf"))])
            sample = torch.cat([batch_items, sample])
        v = model.item_vectors(sample)
        # 1/T folded into the [B, d] side, and unit vectors not normalised twice: the [B, n_items]
        # passes are what a step costs on large catalogues
        measure = "dot" if _unit_vectors(model) and model.measure != "l2" else model.measure
        scores = self._scores if sample is None else score_matrix
        logits = scores(u / self.temperature, v, measure) if measure != "l2" else \
            score_matrix(u, v, measure) / self.temperature
        # sum over pairs of (lse_u - s_ui): the row's log-sum-exp once per positive, no dense target
        total = multinomial_nll(logits, rows, cols, log_weight)
        if self.l2_weight:
            total = total + self.l2_weight * embedding_l2(u, v)
        return total

    def _shared_softmax(self, model: EmbeddingModel, u: torch.Tensor, p: torch.Tensor,
                        negatives: torch.Tensor, mask: torch.Tensor | None,
                        log_q: torch.Tensor | None) -> torch.Tensor:
        """Softmax or BSL over N negatives shared by the batch: one [B, d] x [d, N] product; each
        row's own training positives are masked out of its negatives."""
        n = model.item_vectors(negatives)
        neg = score_matrix(u, n, model.measure)
        log_q_pos = None
        if log_q is not None and self.logq_strength:  # the positive is not sampled from q
            log_q_pos = torch.zeros(len(u), dtype=neg.dtype, device=neg.device)
        total = self._softmax_terms(model.score(u, p), neg, log_q_pos, log_q, mask).mean()
        if self.l2_weight:
            total = total + self.l2_weight * embedding_l2(u, p, n)
        return total

    def _cosine(self, model: EmbeddingModel, u: torch.Tensor, p: torch.Tensor,
                negatives: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # Dot products of unit vectors are the cosines; SimpleX's training user vector carries
        # dropout after normalisation, so its scores are only approximately cosines, as in SimpleX.
        _require_unit_vectors(model, self.loss)
        if negatives.dim() == 1 and shared_loss.applies(self, u):  # one compiled loop (CPU)
            return shared_loss.shared_margin_loss(u, p, model.item_vectors(negatives), mask, self)
        if negatives.dim() == 1:
            n = model.item_vectors(negatives)                  # [N, d]
            neg = u @ n.T                                      # [B, N]
            n_rows = n.unsqueeze(0).expand(len(u), -1, -1)
        else:
            n_rows = model.item_vectors(negatives.reshape(-1)).reshape(*negatives.shape, -1)
            neg = torch.bmm(n_rows, u.unsqueeze(-1)).squeeze(-1)
        pos = (u * p).sum(-1)
        return self._regularised(self._cosine_terms(pos, neg, mask), u, p, n_rows)


    def _cosine_terms(self, pos: torch.Tensor, neg: torch.Tensor,
                      mask: torch.Tensor | None) -> torch.Tensor:
        """Mean over the batch of the CCL or MML terms of [B] positive and [B, N] negative cosines."""
        if self.loss == "ccl":
            return cosine_contrastive(pos, neg, self.margin, self.negative_weight, mask).mean()
        return multi_margin(pos, neg, self.margins, self.margin_weights, self.positive_weight,
                            self.negative_weight, mask).mean()


def _require_unit_vectors(model: EmbeddingModel, loss: str) -> None:
    if not _unit_vectors(model):
        raise NegspaceError(f"the {loss} loss needs cosine scores: a cosine model or CML "
                            f"on the unit sphere (got measure {model.measure!r})")


def _unit_vectors(model: EmbeddingModel) -> bool:
    """Whether the model's vectors are unit-norm, so that their dot product is the cosine."""
    return (bool(getattr(model, "unit_vectors", False)) or model.measure == "cosine"
            or getattr(model, "norm", None) == "sphere")
