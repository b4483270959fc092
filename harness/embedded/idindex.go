package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB itself uses ("sqlite"), one SQLite in the process
)

// FerretDB v1's SQLite backend indexes _id with the expression _ferretdb_sjson->"_id"
// (a unique index, which keeps inserts' duplicate check cheap), but looks documents up
// with _ferretdb_sjson->'$._id' (backends/sqlite/metadata: IDColumn): the same value,
// another expression, so SQLite never uses that index for a find, an update or a delete
// by _id. Each of those scanned the whole table, and an update by _id did it inside its
// write transaction, holding SQLite's one write lock for the scan. The store's FerretDB
// path (pkg/history: every write by exact _id) and the fault tests depended on lookups by
// _id being cheap: under CPU contention, with a few thousand messages, writes queued on
// the lock past the persister's write timeout, were rolled back and retried, and history
// stopped growing for minutes (the topology test's "not stored" failures).
//
// idIndexer adds, beside FerretDB's own, an index on exactly the lookup's expression to
// every collection's table. SQLite then answers FerretDB's SELECT, UPDATE and DELETE by
// _id from it (EXPLAIN QUERY PLAN: SEARCH ... USING INDEX). FerretDB keeps its index
// metadata in _ferretdb_collections and never sees this one; dropping a collection drops
// its table with every index on it.
type idIndexer struct {
	dir string
	log *slog.Logger
}

// idIndexer looks for new collections every idIndexInterval while it finds work (a table
// to index, a file FerretDB is still creating), and half as often after each sweep that
// found none, down to every idIndexMaxInterval: a sweep costs ~2 ms (it opens each file),
// and collections are created at start-up, rarely later. FerretDB creates a collection's
// table when it is first used; a lookup by _id until the next sweep scans, which only
// matters once the collection holds thousands of documents.
const (
	idIndexInterval    = 200 * time.Millisecond
	idIndexMaxInterval = 2 * time.Second
)

// idIndexPrefix starts the names of idIndexer's indexes. FerretDB names its own indexes
// after their table ("<table>_<index>"), and no table name starts with its reserved
// prefix "_ferretdb_".
const idIndexPrefix = "_ferretdb_idpath_"

func newIDIndexer(dir string, log *slog.Logger) *idIndexer {
	return &idIndexer{dir: dir, log: log}
}

// Run sweeps until ctx is done.
func (x *idIndexer) Run(ctx context.Context) {
	wait := idIndexInterval
	for {
		busy, err := x.sweep(ctx)
		if err != nil && ctx.Err() == nil {
			x.log.Warn("ferretdb _id lookup index", "error", err)
		}
		if busy || err != nil {
			wait = idIndexInterval
		} else {
			wait = min(2*wait, idIndexMaxInterval)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// sweep indexes the tables of every database file that lack the index. busy: it found
// work (see idIndexInterval).
func (x *idIndexer) sweep(ctx context.Context) (busy bool, err error) {
	files, err := filepath.Glob(filepath.Join(x.dir, "*.sqlite"))
	if err != nil {
		return false, fmt.Errorf("list databases: %w", err)
	}
	var errs []error
	for _, f := range files {
		b, err := sweepFile(ctx, f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(f), err))
		}
		busy = busy || b
	}
	return busy, errors.Join(errs...)
}

// sweepFile indexes file's tables that lack the index. Its connection lives for the
// sweep only (a millisecond or so). FerretDB drops a database by closing its connections
// and removing the file; SQLite finds a database's -wal and -shm by the file's name and
// removes them when the last connection closes. A connection kept open across sweeps
// would keep the dropped database's WAL files at the name the database created next
// under it uses ("unlinking a database file while in use", sqlite.org/howtocorrupt.html),
// and would go on reading the removed file.
func sweepFile(ctx context.Context, file string) (busy bool, err error) {
	if !inWALMode(file) {
		return true, nil // FerretDB is still creating it (or has just removed it): next sweep
	}
	// FerretDB's own settings for the file (uri.go): wait for the write lock rather than
	// fail at once. mode=rw: never create a file FerretDB has just removed.
	db, err := sql.Open("sqlite", "file:"+file+"?mode=rw&_pragma=busy_timeout(10000)")
	if err != nil {
		return false, fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tables, created, err := unindexed(ctx, db)
	if err != nil || !created {
		return !created, err
	}
	for _, t := range tables {
		// A collection dropped since the query above takes its table with it.
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, idIndexPrefix+t, t)
		if _, err := db.ExecContext(ctx, q); err != nil && !strings.Contains(err.Error(), "no such table") {
			return true, fmt.Errorf("index %s: %w", t, err)
		}
	}
	return len(tables) > 0, nil
}

// unindexed returns the collection tables in db without the index. created is false for a
// file FerretDB is still creating: it has no metadata table yet.
func unindexed(ctx context.Context, db *sql.DB) (tables []string, created bool, err error) {
	rows, err := db.QueryContext(ctx, `SELECT c.table_name FROM _ferretdb_collections c
		WHERE NOT EXISTS (SELECT 1 FROM sqlite_master m WHERE m.type = 'index' AND m.name = ? || c.table_name)`,
		idIndexPrefix)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil, false, nil
		}
		return nil, true, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, true, fmt.Errorf("list tables: %w", err)
		}
		tables = append(tables, t)
	}
	if err := rows.Err(); err != nil {
		return nil, true, fmt.Errorf("list tables: %w", err)
	}
	return tables, true, nil
}

// inWALMode reports whether file is an SQLite database in WAL mode (header bytes 18 and 19
// are 2). FerretDB opens a new database file with journal_mode(wal), which writes that
// header before anything else happens in the file. Until then idIndexer keeps away: a
// reader of the fresh file in the old journal mode could hold the lock the switch to WAL
// needs, and SQLite then leaves the journal mode as it was, without an error. In WAL mode
// idIndexer's reads never block FerretDB's writes.
func inWALMode(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false // dropped since the listing
	}
	defer f.Close()
	var header [20]byte
	if _, err := io.ReadFull(f, header[:]); err != nil {
		return false // still being created
	}
	return header[18] == 2 && header[19] == 2
}
