using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>
/// One-Euro filter (Casiez et al. 2012): heavy smoothing while a value is still (kills landmark jitter),
/// little lag while it moves fast (the cutoff rises with the filtered speed).
/// </summary>
public sealed class OneEuroFilter(double minCutoff = 1.0, double beta = 0.02, double derivativeCutoff = 1.0)
{
    private bool _initialized;
    private double _x, _dx, _t;

    public bool Initialized => _initialized;

    public void Reset() => _initialized = false;

    /// <param name="value">the raw sample</param>
    /// <param name="time">seconds; samples must come in increasing time</param>
    public double Filter(double value, double time)
    {
        if (!_initialized)
        {
            _initialized = true;
            _x = value; _dx = 0; _t = time;
            return value;
        }
        var dt = time - _t;
        // Repeated or backwards timestamps would make alpha 0 or negative: treat as one 30 fps frame.
        if (!(dt > 1e-6)) dt = 1.0 / 30;
        _t = time;
        var rawSpeed = (value - _x) / dt;
        _dx += Alpha(derivativeCutoff, dt) * (rawSpeed - _dx);
        var cutoff = minCutoff + beta * Math.Abs(_dx);
        _x += Alpha(cutoff, dt) * (value - _x);
        return _x;
    }

    private static double Alpha(double cutoff, double dt)
    {
        var tau = 1.0 / (2 * Math.PI * cutoff);
        return 1.0 / (1.0 + tau / dt);
    }
}

/// <summary>One One-Euro filter per landmark coordinate of a track.</summary>
public sealed class LandmarkSmoother
{
    private readonly double _minCutoff, _beta;
    private OneEuroFilter[] _filters = [];

    public LandmarkSmoother(double minCutoff = 1.5, double beta = 0.02) { _minCutoff = minCutoff; _beta = beta; }

    public void Reset() { foreach (var f in _filters) f.Reset(); }

    public Point2f[] Filter(Point2f[] points, double time)
    {
        if (_filters.Length != points.Length * 2)
            _filters = Enumerable.Range(0, points.Length * 2).Select(_ => new OneEuroFilter(_minCutoff, _beta)).ToArray();
        var result = new Point2f[points.Length];
        for (var i = 0; i < points.Length; i++)
            result[i] = new Point2f((float)_filters[2 * i].Filter(points[i].X, time), (float)_filters[2 * i + 1].Filter(points[i].Y, time));
        return result;
    }
}
