"""Paper 003 (Tian, ICML 2017) as its own engine: Theorem 1 under sampling (fig. 6), the
single-ReLU convergence analysis, the fig. 7 vector fields of the cyclic ansatz with trajectories
for K = 2 and 5, the gradient flow against the small-eta order-parameter ODE, and the saddle's
spectra and the x0 < y0 endpoints for K = 2..10.

(`003-symmetric-saddle` in `stability.py` is the same saddle found in order-parameter space.)
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import jaxdyn as jd

from .._reproduce import register
from . import new_axes, save


def theorem1_sampling_error(thetas, n_samples, *, d=10, trials=8, seed=0):
    """Relative error `|F_MC - F| / |F|` of Monte Carlo estimates of Theorem 1 (RMS over `trials`)
    for unit `e`, `|w| = 1` at each angle, `n_samples` Gaussian inputs in `d` dimensions."""
    thetas = np.atleast_1d(np.asarray(thetas, float))
    e = jnp.eye(d)[0]
    W = np.zeros((len(thetas), d))
    W[:, 0], W[:, 1] = np.cos(thetas), np.sin(thetas)
    W = jnp.asarray(W)
    F = jd.population_gating(e, W)

    @jax.jit
    def est(key):
        x = jax.random.normal(key, (n_samples, d))
        gate = (x[:, 0] > 0)[:, None] * jax.nn.relu(x @ W.T)  # (n, angles)
        return gate.T @ x / n_samples

    errs = []
    for k in jax.random.split(jax.random.PRNGKey(seed), trials):
        Fh = est(k)
        errs.append(np.linalg.norm(np.asarray(Fh - F), axis=-1)
                    / np.linalg.norm(np.asarray(F), axis=-1))
    return np.sqrt(np.mean(np.square(errs), axis=0))


@register("003-theorem1", "Paper 003 fig. 6: Theorem 1 against sampling (error vs angle, vs samples) and quadrature")
def theorem1(outdir, *, fast=False):
    th = np.linspace(0.05, np.pi - 0.05, 24 if fast else 60)
    n0 = 10_000
    err_th = theorem1_sampling_error(th, n0, trials=4 if fast else 16)
    ns = np.array([100, 1000, 10_000, 100_000] if fast
                  else [100, 300, 1000, 3000, 10_000, 30_000, 100_000, 300_000])
    th_s = np.linspace(0.1, np.pi - 0.1, 16)
    err_n = np.array([np.sqrt(np.mean(theorem1_sampling_error(th_s, int(n), trials=4 if fast else 8)
                                      ** 2))
                      for n in ns])
    slope = np.polyfit(np.log(ns), np.log(err_n), 1)[0]
    save(plot_theorem1(th, err_th, ns, err_n, n0=n0), outdir / "003-theorem1.png")
    return {"angles": th, "rel_rms_error_vs_angle": err_th, "samples": ns, "rel_rms_error_vs_samples": err_n,
            "fitted_slope": slope, "expected_slope": -0.5,
            "note": "the error grows towards theta = pi, where |F| -> 0 (the gates overlap less), "
                    "as in the paper's fig. 6a"}


def plot_theorem1(th, err_th, ns, err_n, *, n0, axes=None):
    """Paper 003 fig. 6: relative sampling error against the angle (`n0` samples) and against the
    number of samples, with the n^(-1/2) line and the fitted slope."""
    slope = np.polyfit(np.log(ns), np.log(err_n), 1)[0]
    fig, axs = new_axes(axes, 2, figsize=(9, 3.4))
    axs[0].plot(th, err_th, "o-", ms=3)
    axs[0].set(xlabel=r"angle $\theta(e, w)$ (rad)", ylabel=r"relative RMS error $|\hat F - F|/|F|$",
               yscale="log", title=f"{n0} samples, d = 10")
    axs[1].loglog(ns, err_n, "o-", label="Monte Carlo")
    axs[1].loglog(ns, err_n[0] * np.sqrt(ns[0] / ns), "k:", label=r"$\propto n^{-1/2}$")
    axs[1].set(xlabel="samples n", ylabel="relative RMS error", title=f"fitted slope {slope:.3f}")
    axs[1].legend()
    return fig


@register("003-single-relu", "Paper 003 sec. 5.1: Lyapunov region, random-init probability vs thm. 4, antiparallel escape")
def single_relu(outdir, *, fast=False):
    tc = jd.lyapunov_critical_angle()
    # (a) sign of dV/dt in the plane (w* = (1, 0)), trajectories
    g = np.linspace(-2.2, 2.2, 161 if fast else 321)
    X, Y = np.meshgrid(g, g)
    P = jnp.stack([X, Y, 0 * X], -1)
    rate = np.asarray(jd.lyapunov_rate(P, jnp.array([1.0, 0.0, 0.0])))
    ws = jnp.array([[1.0, 0.0, 0.0]])
    ts = jnp.linspace(0.0, 30.0, 301)
    starts = [(-1.5, 0.3), (-1.8, -0.05), (0.1, 1.8), (-0.05, -0.05), (1.5, -1.5), (-1.6, 1.2)]
    paths = [np.asarray(jd.gradient_flow(jnp.array([[x0, y0, 0.0]]), ws, times=ts).W[:, 0])
             for x0, y0 in starts]
    # (b) probability of starting in the ball vs the bound
    rs = np.geomspace(1e-3, 0.5, 12 if fast else 30)
    out_p = {}
    for d in (10, 100, 1000):
        out_p[f"d={d}"] = {"r": rs, "P_in_ball": np.array([jd.init_success_probability(r, d) for r in rs]),
                           "bound": np.array([jd.tian_probability_bound(r, d) for r in rs])}
    # and the fraction that actually converges (flows from the ball), d = 10
    d, r = 10, 0.2
    n = 64 if fast else 512
    x = jax.random.normal(jax.random.PRNGKey(0), (n, d))
    rad = r * jax.random.uniform(jax.random.PRNGKey(1), (n,)) ** (1 / d)
    W0 = (x / jnp.linalg.norm(x, axis=1, keepdims=True) * rad[:, None])[:, None, :]
    flows = jax.vmap(lambda W: jd.gradient_flow(W, jnp.eye(1, d), times=jnp.array([0.0, 80.0])))(W0)
    frac = float(jnp.mean(flows.loss[:, -1] < 1e-10))
    # (c) escape from near-antiparallel starts
    phis = np.geomspace(1e-10, 1e-1, 6 if fast else 10)
    ts = jnp.linspace(0.0, 60.0, 6001)
    tesc = []
    for phi0 in phis:
        w0 = jnp.array([[np.cos(np.pi - phi0), np.sin(np.pi - phi0), 0.0]])
        W = np.asarray(jd.gradient_flow(w0, jnp.eye(1, 3), times=ts, atol=1e-24).W[:, 0])
        ang = np.arctan2(W[:, 1], W[:, 0])
        i = int(np.argmax(ang < np.pi / 2))
        tesc.append(float(np.interp(np.pi / 2, [ang[i], ang[i - 1]], [ts[i], ts[i - 1]])))
    save(plot_single_relu(dict(X=X, Y=Y, rate=rate, starts=starts, paths=paths, probability=out_p,
                               converged=(r, frac, d, n), phis=phis, escape_time=tesc)),
         outdir / "003-single-relu.png")
    return {"theta_c": tc, "max_lyapunov_rate_on_grid": float(np.max(rate)), "probability": out_p,
            "converged_fraction_d10_r0.2": frac, "runs": n,
            "P_in_ball_d10_r0.2": jd.init_success_probability(0.2, 10),
            "bound_d10_r0.2": jd.tian_probability_bound(0.2, 10),
            "escape_phi0": phis, "escape_time": tesc,
            "escape_formula": jd.antiparallel_escape_time(phis)}


def plot_single_relu(res, *, axes=None):
    """Paper 003 sec. 5.1 in three panels from the dict `res` of `single_relu`'s computation:
    the sign of dV/dt with trajectories and the paper's ball, the probability of starting in the
    ball against the bound (and the converged fraction), and the antiparallel escape time."""
    from matplotlib.patches import Circle  # deferred: matplotlib only when drawing

    fig, axs = new_axes(axes, 3, figsize=(13, 3.9))
    ax = axs[0]
    ax.contourf(res["X"], res["Y"], np.sign(res["rate"]), levels=[-2, 0, 2],
                colors=["#d8e8f8", "#f8d8d0"])
    ax.add_patch(Circle((1, 0), 1, fill=False, ls="--", color="k", lw=1))
    for (x0, y0), W in zip(res["starts"], res["paths"]):
        ax.plot(W[:, 0], W[:, 1], "-", lw=1)
        ax.plot(x0, y0, "k.", ms=4)
    ax.plot(1, 0, "r*", ms=10)
    ax.set(xlabel="$w_1$", ylabel="$w_2$", aspect="equal",
           title=r"$dV/dt<0$ except at $w^*$; dashed: paper's ball")
    ax = axs[1]
    for (key, p), c in zip(res["probability"].items(), ("C0", "C1", "C2")):
        d = key.split("=")[1]
        ax.semilogx(p["r"], p["P_in_ball"], "-", c=c, label=f"exact, d = {d}")
        ax.semilogx(p["r"], np.where(p["bound"] > 0, p["bound"], np.nan), ":", c=c,
                    label=f"bound (1-eps)/2, d = {d}")
    r, frac, d, n = res["converged"]
    ax.semilogx([r], [frac], "ks", label=f"converged, d = {d} ({n} runs)")
    ax.set(xlabel=r"init radius $r/|w^*|$", ylabel="probability", ylim=(0, 1.05),
           title=r"$w_0$ uniform in $|w| \leq r$")
    ax.legend(fontsize=6.5)
    ax = axs[2]
    phis = res["phis"]
    ax.semilogx(phis, res["escape_time"], "o", label="gradient flow")
    ax.semilogx(phis, jd.antiparallel_escape_time(phis), "k-", lw=0.8,
                label=r"$2\ln(1 + \pi |w_0| / (|w^*| \phi_0))$")
    ax.set(xlabel=r"initial $\phi_0 = \pi - \theta_0$", ylabel=r"time to reach $\theta = \pi/2$",
           title="near-antiparallel start ($|w_0| = |w^*|$)")
    ax.legend(fontsize=7)
    return fig


def spurious_endpoint(K):
    """The x0 < y0 endpoint of the cyclic flow (Newton-refined) and its full-space index."""
    tr = jd.cyclic_flow(0.1, 0.2, K=K, times=jnp.array([0.0, 3000.0]))
    z = np.asarray(jd.cyclic_fixed_point(float(tr.x[-1]), float(tr.y[-1]), K=K))
    W, Wt = jd.cyclic_weights(z[0], z[1], K=K, d=K + 1)
    ev = np.linalg.eigvalsh(np.asarray(jd.flow_jacobian(W, Wt)))
    return z, int(np.sum(ev > 1e-10)), float(jd.population_loss(W, Wt)), ev


_FIG7_STARTS = [(0.05, 0.02), (0.3, 0.29), (0.8, 0.1), (0.1, 0.1), (0.6, 0.6), (0.02, 0.05),
                (0.29, 0.3), (0.1, 0.9)]


@register("003-fig7", "Paper 003 fig. 7: the cyclic-ansatz vector field for K = 2 and 5 with trajectories")
def fig7(outdir, *, fast=False):
    out, panels = {}, {}
    g = np.linspace(-0.8, 1.2, 17 if fast else 25)
    for K in (2, 5):
        X, Y = np.meshgrid(g, np.linspace(-0.05, 1.2, len(g)))
        fx, fy = (np.asarray(a) for a in jd.cyclic_field(jnp.asarray(X), jnp.asarray(Y), K=K))
        paths = []
        for x0, y0 in _FIG7_STARTS:
            # on the diagonal stop at the saddle: the 2-D field is symmetric only to rounding, and
            # the unstable direction (rate beta_T) would amplify that later
            ts = jnp.geomspace(1e-3, 12.0 if x0 == y0 else 300.0, 400)
            tr = jd.cyclic_flow(x0, y0, K=K, times=ts)
            paths.append((np.r_[x0, np.asarray(tr.x)], np.r_[y0, np.asarray(tr.y)]))
        ys = jd.symmetric_saddle(K)
        z, index, loss = spurious_endpoint(K)[:3]
        out[f"K={K}"] = {"saddle_y": ys, "x0<y0_endpoint": z, "index": index, "loss": loss}
        panels[K] = dict(X=X, Y=Y, fx=fx, fy=fy, paths=paths, saddle_y=ys, endpoint=z, index=index)
    save(plot_fig7(panels, g), outdir / "003-fig7.png")
    return out


def plot_fig7(panels, g, *, axes=None):
    """Paper 003 fig. 7: for each K of `panels` ({K: dict(X, Y, fx, fy, paths, saddle_y,
    endpoint, index)}) the direction field of the cyclic ansatz, trajectories, the saddle, the
    teacher and the x0 < y0 endpoint; `g` the x grid (axis limits)."""
    fig, axs = new_axes(axes, len(panels), figsize=(10, 4.6))
    for ax, (K, p) in zip(axs, panels.items()):
        sp = np.hypot(p["fx"], p["fy"])
        ax.quiver(p["X"], p["Y"], p["fx"] / (sp + 1e-12), p["fy"] / (sp + 1e-12),
                  np.log10(sp + 1e-12), cmap="viridis", scale=35, width=0.003)
        for (x0, y0), (xs, ys_) in zip(_FIG7_STARTS, p["paths"]):
            ax.plot(xs, ys_, "-", lw=1.2)
            ax.plot(x0, y0, "k.", ms=4)
        ys, z, index = p["saddle_y"], p["endpoint"], p["index"]
        ax.plot(ys, ys, "rx", ms=9, mew=2, label=f"saddle $y^*$ = {ys:.4f}")
        ax.plot(1, 0, "r*", ms=11, label="teacher (1, 0)")
        ax.plot(*z, "ms", ms=7, label=(f"x0<y0 end ({z[0]:.3f}, {z[1]:.3f}), index {index}"
                                        if K > 2 else "x0<y0 end (0, 1): the permutation"))
        ax.plot(g, g, "k:", lw=0.6)
        ax.set(xlabel="x", ylabel="y", title=f"K = {K}: cyclic ansatz w = (x, y, ..., y)",
               xlim=(g[0], g[-1]), ylim=(-0.05, 1.2))
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("arrows: direction of (dx/dt, dy/dt); colour: log10 of its length", fontsize=9)
    return fig


@register("003-flow-vs-ode", "Paper 003: weight-space gradient flow vs jaxdyn's small-eta ODE (t = eta alpha)")
def flow_vs_ode(outdir, *, fast=False):
    d = 6
    Wt = jnp.zeros((2, d)).at[0, 0].set(1.0)
    Wt = Wt.at[1, 0].set(1.8 * 0.4).at[1, 1].set(1.8 * np.sqrt(1 - 0.16))
    W0 = jnp.asarray(np.random.default_rng(3).normal(size=(2, d)) * 0.2)
    v = jnp.array([1.0, 0.7])
    t = jnp.linspace(0.0, 150.0 if fast else 600.0, 301)
    tr = jd.gradient_flow(W0, Wt, times=t, v=v, rtol=1e-12, atol=1e-14)
    eta = 0.5
    sc = jd.population_scenario(Wt, K=2, v=v)
    ode = jd.integrate(sc, jd.weight_order_params(W0, Wt), eta=eta, alphas=t / eta, eta2=False,
                       solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-14, max_steps=1_000_000)
    dev = np.maximum(np.max(np.abs(np.asarray(tr.Q - ode.Q)), axis=(1, 2)),
                     np.max(np.abs(np.asarray(tr.R - ode.R)), axis=(1, 2)))
    save(plot_flow_vs_ode(t, tr, ode, dev), outdir / "003-flow-vs-ode.png")
    return {"max_abs_difference": float(dev.max()), "t_end": float(t[-1]),
            "loss_start": float(tr.loss[0]), "loss_end": float(tr.loss[-1]), "eta": eta}


def plot_flow_vs_ode(t, tr, ode, dev, *, axes=None):
    """The loss of the weight-space flow `tr` and eps_g of the ODE `ode` against t, and their
    largest overlap difference `dev`."""
    fig, axs = new_axes(axes, 2, figsize=(9, 3.4))
    axs[0].semilogy(t, np.asarray(tr.loss), label="gradient flow (weights)")
    axs[0].semilogy(t, np.asarray(ode.eps_g), "--", label=r"small-$\eta$ ODE at $\alpha = t/\eta$")
    axs[0].set(xlabel=r"$t = \eta\alpha$", ylabel=r"$L = \epsilon_g$",
               title=r"teacher $|w^*_1|=1$, $|w^*_2|=1.8$, cos 0.4; $v=(1, 0.7)$")
    axs[0].legend(fontsize=8)
    axs[1].semilogy(t[1:], dev[1:] + 1e-17)
    axs[1].set(xlabel=r"$t$", ylabel=r"max $|\Delta Q|, |\Delta R|$", title="agreement (Dopri8, rtol 1e-12)")
    return fig


@register("003-ssb-spectrum", "Paper 003: saddle y* and spectra (jacfwd vs closed form), x0<y0 endpoints, K=2..10")
def ssb_spectrum(outdir, *, fast=False):
    Ks = list(range(2, 7) if fast else range(2, 11))
    rows = {}
    for K in Ks:
        ys = jd.symmetric_saddle(K)
        z = np.asarray(jd.cyclic_fixed_point(0.5, 0.5, K=K))
        W, Wt = jd.cyclic_weights(ys, ys, K=K, d=K + 2)
        ev = np.linalg.eigvalsh(np.asarray(jd.flow_jacobian(W, Wt)))
        sp = jd.saddle_spectrum(K, d=K + 2)
        J2 = np.asarray(jd.cyclic_jacobian(ys, ys, K=K))
        ev2 = np.sort(np.linalg.eigvals(J2).real)
        end = spurious_endpoint(K)
        rows[K] = {"y_star": ys, "newton_minus_formula": float(np.max(np.abs(z - ys))),
                   "full_spectrum_max_error": float(np.max(np.abs(ev - sp.all()))),
                   "reduced_eigs": ev2, "reduced_closed_form": np.sort(sp.reduced),
                   "beta_T": float(sp.reduced[1]), "n_unstable_saddle_d=K+2": int(np.sum(ev > 1e-10)),
                   "x0<y0_endpoint": end[0], "x0<y0_index_d=K+1": end[1], "x0<y0_loss": end[2]}
    save(plot_ssb_spectrum(rows), outdir / "003-ssb-spectrum.png")
    return {f"K={K}": r for K, r in rows.items()}


def plot_ssb_spectrum(rows, *, axes=None):
    """The saddle's closed-form spectrum (bars) with the reduced unstable eigenvalue, and the
    index of the x0 < y0 endpoint, for each K of `rows` (from `ssb_spectrum`)."""
    Ks = list(rows)
    fig, axs = new_axes(axes, 2, figsize=(10, 3.6))
    for K in Ks:
        sp = jd.saddle_spectrum(K, d=K + 2)
        axs[0].plot([K] * len(sp.values), sp.values, "_", ms=16, c="k")
    axs[0].plot(Ks, [rows[K]["beta_T"] for K in Ks], "o", ms=4, label=r"$\beta_T$ (jacfwd)")
    axs[0].axhline(0, c="k", lw=0.5)
    axs[0].set(xlabel="K", ylabel=r"eigenvalues of $-\nabla^2 L$ at the saddle",
               title="closed form (bars), jacfwd (dots: the reduced unstable one)")
    axs[0].legend(fontsize=8)
    axs[1].plot(Ks, [rows[K]["x0<y0_index_d=K+1"] for K in Ks], "s-")
    axs[1].set(xlabel="K", ylabel="unstable directions (full space)",
               title=r"$x_0 < y_0$ endpoint: saddle index (0 = local minimum)")
    return fig
