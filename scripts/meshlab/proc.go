package meshlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// helper is a process Spawn started next to a node, and a channel closed
// when it has exited.
type helper struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Spawn starts a helper program (iperf3, a load generator, a bare
// WireGuard reference) inside the node's namespace, its output in a log
// file of its own in the lab directory. Close stops every helper, by PID,
// before it stops the nodes. It returns the command and the log's path.
func (n *Node) Spawn(name string, args ...string) (*exec.Cmd, string, error) {
	cmd := n.NS.Command(name, args...)
	logPath := filepath.Join(n.lab.Dir, fmt.Sprintf("%s-%s-%d.log", n.Name, filepath.Base(name), time.Now().UnixNano()))
	exited, err := n.lab.startLogged(cmd, logPath, "")
	if err != nil {
		return nil, "", err
	}
	h := &helper{cmd: cmd, done: make(chan struct{})}
	go func() { <-exited; close(h.done) }()
	n.lab.mu.Lock()
	n.lab.helpers = append(n.lab.helpers, h)
	n.lab.mu.Unlock()
	return cmd, logPath, nil
}

// stopHelpers interrupts every helper (a load generator prints its summary,
// a WireGuard reference removes its interface) and kills whichever has not
// exited within 3 s.
func (l *Lab) stopHelpers() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.helpers {
		h.cmd.Process.Signal(os.Interrupt)
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, h := range l.helpers {
		select {
		case <-h.done:
		case <-time.After(time.Until(deadline)):
			h.cmd.Process.Kill()
			<-h.done
		}
	}
	l.helpers = nil
}

// startLogged starts cmd with stdout and stderr appended to logPath (after
// header, if any) and returns a channel that receives its exit error once;
// the log is closed when the process has exited.
func (l *Lab) startLogged(cmd *exec.Cmd, logPath, header string) (chan error, error) {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if header != "" {
		fmt.Fprint(logf, header)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	return done, nil
}
