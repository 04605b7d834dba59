def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
primes = [n for n in range(2, 20000) if all(n % p for p in range(2, int(n ** 0.5) + 1))]
words = {}
for i in range(200000):
    key = "w%d" % (i % 997)
    words[key] = words.get(key, 0) + i
print(fib(24), len(primes), sum(words.values()) % 1000003)
