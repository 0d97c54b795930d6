using System.Diagnostics;

namespace Deid.Pipeline;

/// <summary>
/// The one place device work runs: SSD detection, E_attr → M → G and the audit's second attempts all go through
/// <see cref="Run{T}"/>, one call at a time, so a GPU is never asked to hold two batches' activations at once and
/// CPU stages never oversubscribe torch's thread pool. Counts the time it was busy, so a bench can tell how long
/// inference sat idle waiting for crops.
/// </summary>
public sealed class DeviceExecutor
{
    private readonly object _gate = new();
    private long _busyTicks;
    private long _calls;

    public TimeSpan Busy => TimeSpan.FromTicks(Interlocked.Read(ref _busyTicks));
    public long Calls => Interlocked.Read(ref _calls);

    public T Run<T>(Func<T> work)
    {
        lock (_gate)
        {
            var start = Stopwatch.GetTimestamp();
            try { return work(); }
            finally
            {
                Interlocked.Add(ref _busyTicks, Stopwatch.GetElapsedTime(start).Ticks);
                Interlocked.Increment(ref _calls);
            }
        }
    }

    public void Run(Action work) => Run(() => { work(); return 0; });
}
