namespace Deid.Pipeline;

/// <summary>Restores sequence order after parallel workers: holds items until every earlier one has arrived.</summary>
public sealed class ReorderBuffer<T>(long firstSequence = 0)
{
    private readonly SortedDictionary<long, T> _pending = new();
    private long _next = firstSequence;

    public int PendingCount => _pending.Count;
    public long NextSequence => _next;

    /// <summary>Adds one item; returns the items now ready, in order (possibly none).</summary>
    public List<T> Add(long sequence, T item)
    {
        if (sequence < _next || !_pending.TryAdd(sequence, item))
            throw new InvalidOperationException($"sequence {sequence} was already seen");
        var ready = new List<T>();
        while (_pending.Remove(_next, out var next))
        {
            ready.Add(next);
            _next++;
        }
        return ready;
    }

    /// <summary>Everything still held (used to dispose leftovers after a failure).</summary>
    public List<T> Drain()
    {
        var all = _pending.Values.ToList();
        _pending.Clear();
        return all;
    }
}
